#!/usr/bin/env bash
# Cloud Build's test step: the same `make test` as on a laptop, inside python:3.11-slim.
set -euo pipefail
apt-get update -qq
apt-get install -y -qq make >/dev/null
make system-packages test
