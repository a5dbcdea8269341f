"""The retraining job run as a real process (`python -m retrain_job`), its summary line parsed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from testbed.servers import REPO


def run_job(store_uri: str, *args: str, env: dict | None = None, timeout: float = 180) -> tuple[int, dict]:
    """The job's exit code and its last output line, parsed."""
    proc = subprocess.run([sys.executable, "-m", "retrain_job", "--store", store_uri, *args], cwd=REPO, check=False,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-2000:]
    return proc.returncode, json.loads(lines[-1])
