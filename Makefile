# Two commands matter: `make serve` and `make system-packages test`. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3
PORT ?= 8080
BIND_HOST ?= 127.0.0.1
WORKERS ?= 1
# `make serve`'s threads: gunicorn's gthread worker holds one for every connection still sending its request,
# so 32 leave /health answering while 16 slow clients trickle (docs/reliability.md, "Slow clients")
THREADS ?= 32
MODEL_STORE ?= $(CURDIR)/local_bucket
PROFILE ?= normal
MODEL ?=
SHIFT ?=
ROWS ?= 300
export PIP_DISABLE_PIP_VERSION_CHECK := 1

VENV := .venv
FN_VENV := .venv-function
PIP_QUIET := -q
QUIET_PIP_WARNINGS := 2> >(grep -v "^WARNING: Location" >&2)
# Debian packages the suite and the benchmark drive: chromium renders the drift report in a browser test,
# wrk is the benchmark's load generator.
SYSTEM_PACKAGES := chromium wrk

.DEFAULT_GOAL := help
.PHONY: help serve test system-packages check-system-packages model retrain monitor traffic lint infra-check \
	reliability bench stages sweep load clean init scale erase score

help: ## list the targets with one line each
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/\1\t\2/' | \
		awk -F'\t' '{printf "  make %-16s %s\n", $$1, $$2}'

# Development environment: the project installed editable with the function, the job and the test tools.
$(VENV)/.installed: pyproject.toml requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) -r requirements.txt $(QUIET_PIP_WARNINGS)
	touch $@

# The function's lean environment: the project with the `function` extra only (no pandas, no scikit-learn).
$(FN_VENV)/.installed: pyproject.toml
	test -x $(FN_VENV)/bin/python || $(PYTHON) -m venv $(FN_VENV)
	$(FN_VENV)/bin/pip install $(PIP_QUIET) -e ".[function]" $(QUIET_PIP_WARNINGS)
	touch $@

# checkov in its own virtualenv: its bc-python-hcl2 clashes with python-hcl2 used by the tests.
.venv-checkov/.installed:
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install $(PIP_QUIET) "checkov>=3.2,<4" $(QUIET_PIP_WARNINGS)
	touch $@

serve: $(FN_VENV)/.installed model ## serve the function on PORT from the local bucket (trains a first model if needed)
	@$(FN_VENV)/bin/python -m scripts.announce --url http://$(BIND_HOST):$(PORT) &
	cd function && MODEL_STORE="$(MODEL_STORE)" LOG_TO_STORE=1 WORKERS=$(WORKERS) THREADS=$(THREADS) \
		POINTER_TTL_S=$${POINTER_TTL_S:-5} ../$(FN_VENV)/bin/functions-framework --source main.py --target predict \
		--host $(BIND_HOST) --port $(PORT)

test: $(VENV)/.installed $(FN_VENV)/.installed .venv-checkov/.installed .venv-tf/.installed .venv-kserve/.installed \
	.venv-bqemulator/.installed \
	check-system-packages ## the whole suite: lint, unit, integration, reliability, infra
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

system-packages: ## install Debian's chromium and wrk with apt-get (sudo unless root), if missing
	@missing=$$(for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make system-packages: installing $$missing from Debian with apt-get"; \
		sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

check-system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "missing system packages:" $$missing "- run 'make system-packages' first"; exit 1; fi

model: $(VENV)/.installed ## train and publish a first model of every spec into the local bucket if it has none
	@echo "make model: a first model of every spec without one in $(MODEL_STORE) (about 20 s the first time)"
	@set -o pipefail; LOG_LEVEL=WARNING $(VENV)/bin/python -m retrain_job --store "$(MODEL_STORE)" --all-models \
		--if-no-model | $(VENV)/bin/python -m scripts.first_models

retrain: $(VENV)/.installed ## one run of the retraining job for MODEL=name (default: the default spec) on the local bucket
	$(VENV)/bin/python -m retrain_job --store "$(MODEL_STORE)" $(if $(MODEL),--model $(MODEL))

monitor: $(VENV)/.installed ## live quality from feedback, the canary judged on it, for MODEL=name on the local bucket
	$(VENV)/bin/python -m retrain_job monitor --store "$(MODEL_STORE)" $(if $(MODEL),--model $(MODEL))

score: $(VENV)/.installed ## score a file: MODEL=name INPUT=file, folder or glob (local or gs://) OUTPUT=folder [VERSION=v] [ID_COLUMNS=a,b] [LOG=1]
	$(VENV)/bin/python -m retrain_job score --store "$(MODEL_STORE)" --input "$(INPUT)" --output "$(OUTPUT)" \
		$(if $(MODEL),--model $(MODEL)) $(if $(VERSION),--version $(VERSION)) $(if $(ID_COLUMNS),--id-columns "$(ID_COLUMNS)") \
		$(if $(LOG),--log)

erase: $(VENV)/.installed ## remove one person's logged rows and feedback: MODEL=name FIELD=field VALUE=value (docs/personal-data.md)
	$(VENV)/bin/python -m retrain_job erase --store "$(MODEL_STORE)" --model "$(MODEL)" --field "$(FIELD)" --value "$(VALUE)"

init: $(VENV)/.installed ## a new model's spec to review, from CSV=path TARGET=column [NAME=name] [TASK=binary|multiclass|regression]
	$(VENV)/bin/python -m retrain_job init --csv "$(CSV)" --target "$(TARGET)" $(if $(NAME),--name "$(NAME)") $(if $(TASK),--task "$(TASK)")

traffic: $(VENV)/.installed ## synthetic traffic to `make serve`: MODEL=name, SHIFT="--scale FEATURE=1.2"
	$(VENV)/bin/python -m scripts.send_traffic --url http://$(BIND_HOST):$(PORT) $(if $(MODEL),--model $(MODEL)) --rows $(ROWS) \
		$(SHIFT)

lint: $(VENV)/.installed ## ruff over the whole tree
	$(VENV)/bin/ruff check .

# KServe's Python client, which the suite drives the V1 routes with: its package pins pandas<3 and protobuf<7.
# The BigQuery emulator the job's log queries are tested against (tests/support/bigquery.py), in its own
# virtualenv: it needs duckdb 1.5 (RANGE_BUCKET fails on duckdb 2.0) and sqlglot<30.12, which must not pin .venv's.
.venv-bqemulator/.installed: requirements-bqemulator.txt
	test -x .venv-bqemulator/bin/python || $(PYTHON) -m venv .venv-bqemulator
	.venv-bqemulator/bin/pip install $(PIP_QUIET) -r requirements-bqemulator.txt $(QUIET_PIP_WARNINGS)
	touch $@

.venv-kserve/.installed:
	test -x .venv-kserve/bin/python || $(PYTHON) -m venv .venv-kserve
	.venv-kserve/bin/pip install $(PIP_QUIET) "kserve==0.21.0" $(QUIET_PIP_WARNINGS)
	touch $@

# The offline stand-in for hashicorp/google (terraform/schema/provider.py) in its own virtualenv:
# PyPI's tf needs protobuf<6, the suite's google-cloud libraries need protobuf>=6.33.
.venv-tf/.installed:
	test -x .venv-tf/bin/python || $(PYTHON) -m venv .venv-tf
	.venv-tf/bin/pip install $(PIP_QUIET) "tf==1.2.0" $(QUIET_PIP_WARNINGS)
	touch $@

infra-check: $(VENV)/.installed $(FN_VENV)/.installed .venv-checkov/.installed .venv-tf/.installed ## Terraform (fmt, offline validate against the real provider schema, checkov) and Cloud Build checks
	$(VENV)/bin/python terraform/schema/validate.py
	$(VENV)/bin/python -m pytest tests/infra

reliability: $(VENV)/.installed $(FN_VENV)/.installed ## hostile input, storage faults, hot swaps, security
	$(VENV)/bin/python -m pytest tests/reliability

# The peers the benchmark runs beside ours (mlserver conflicts with current FastAPI: its own venv).
.venv-peers/.installed: bench/requirements-peers.txt
	test -x .venv-peers/bin/python || $(PYTHON) -m venv .venv-peers
	.venv-peers/bin/pip install $(PIP_QUIET) -r bench/requirements-peers.txt $(QUIET_PIP_WARNINGS)
	touch $@

.venv-mlserver/.installed:
	test -x .venv-mlserver/bin/python || $(PYTHON) -m venv .venv-mlserver
	.venv-mlserver/bin/pip install $(PIP_QUIET) mlserver==1.7.1 mlserver-xgboost==1.7.1 $(QUIET_PIP_WARNINGS)
	touch $@

scale: $(VENV)/.installed ## the job's log queries at 1 M and 5 M logged rows: monitor, drift report, retrain with feedback (SCALE_ROWS="100000 1000000" for a quick run); writes bench/RESULTS.md
	$(VENV)/bin/python -m bench.scale $(if $(SCALE_ROWS),--rows $(SCALE_ROWS))

bench: $(VENV)/.installed $(FN_VENV)/.installed .venv-peers/.installed .venv-mlserver/.installed check-system-packages ## ours against the peers in one run, then batch scoring against inplace_predict and a shadow's added latency; writes bench/RESULTS.md
	$(VENV)/bin/python -m bench.run
	$(VENV)/bin/python -m bench.score
	$(VENV)/bin/python -m bench.shadow

stages: $(FN_VENV)/.installed ## where a request's time goes in process: single requests, batch stages, TreeSHAP
	$(FN_VENV)/bin/python -m bench.stages

sweep: $(VENV)/.installed $(FN_VENV)/.installed check-system-packages ## our function under each WORKERS x THREADS setting
	$(VENV)/bin/python -m bench.sweep

load: $(VENV)/.installed $(FN_VENV)/.installed model ## Locust headless: PROFILE=baseline|normal|stress|spike|10x [MODEL=name] [HOST=url]
	PROFILE=$(PROFILE) HOST=$(HOST) MODEL=$(MODEL) MODEL_STORE="$(MODEL_STORE)" $(VENV)/bin/python -m load.run

clean: ## remove everything the Makefile creates (virtualenvs, local bucket, outputs, caches)
	rm -rf $(VENV) $(FN_VENV) .venv-checkov .venv-tf .venv-kserve .venv-bqemulator .venv-peers .venv-mlserver local_bucket bench/out load/out \
		.pytest_cache .ruff_cache .hypothesis .schemathesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
