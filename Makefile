# Two commands matter: `make serve` and `make test`. Everything else is here for the issues' workflows.
SHELL := /bin/bash
PYTHON ?= python3
PORT ?= 8080
BIND_HOST ?= 127.0.0.1
WORKERS ?= 1
THREADS ?= 8
MODEL_STORE ?= $(CURDIR)/local_bucket
PROFILE ?= normal
export PIP_DISABLE_PIP_VERSION_CHECK := 1

VENV := .venv
FN_VENV := .venv-function
PIP_QUIET := -q

.PHONY: serve test system-deps model retrain traffic lint infra-check reliability bench sweep load clean

# Full development environment: function, job and test tools.
$(VENV)/.installed: requirements.txt function/requirements.txt retrain_job/requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_QUIET) -r requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
	touch $@

# The function's lean production environment: no pandas, scikit-learn or scipy beside xgboost.
$(FN_VENV)/.installed: function/requirements.txt
	test -x $(FN_VENV)/bin/python || $(PYTHON) -m venv $(FN_VENV)
	$(FN_VENV)/bin/pip install $(PIP_QUIET) -r function/requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
	touch $@

# checkov in its own virtualenv: its bc-python-hcl2 clashes with python-hcl2 used by the tests.
.venv-checkov/.installed:
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install $(PIP_QUIET) "checkov>=3.2,<4" 2> >(grep -v "^WARNING: Location" >&2)
	touch $@

## make model: train and publish the first model into the local store if it has none
model: $(VENV)/.installed
	$(VENV)/bin/python -m retrain_job --store "$(MODEL_STORE)" --if-no-model | tail -n 1

## make serve: start the function on $(PORT) against the local store, training a first model if needed
serve: $(FN_VENV)/.installed model
	cd function && MODEL_STORE="$(MODEL_STORE)" LOG_TO_STORE=1 WORKERS=$(WORKERS) THREADS=$(THREADS) \
		POINTER_TTL_S=$${POINTER_TTL_S:-5} ../$(FN_VENV)/bin/functions-framework --source main.py --target predict \
		--host $(BIND_HOST) --port $(PORT)

## make retrain: one run of the retraining job against the local store
retrain: $(VENV)/.installed
	$(VENV)/bin/python -m retrain_job --store "$(MODEL_STORE)"

## system tools the suite drives: Debian's chromium (report screenshots) and wrk (load generator)
system-deps:
	@command -v chromium >/dev/null && command -v wrk >/dev/null || { \
		echo "installing chromium and wrk from Debian"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq chromium wrk >/dev/null; }

## make test: install everything and run the whole suite (lint, unit and integration, infra checks)
test: $(VENV)/.installed $(FN_VENV)/.installed .venv-checkov/.installed system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

## make infra-check: Terraform contract (python-hcl2), checkov with our policies, terraform fmt, Cloud Build scripts
infra-check: $(VENV)/.installed $(FN_VENV)/.installed .venv-checkov/.installed
	$(VENV)/bin/python -m pytest tests/infra

# The peers the benchmark runs beside ours (mlserver conflicts with current FastAPI: its own venv).
.venv-peers/.installed: bench/requirements-peers.txt
	test -x .venv-peers/bin/python || $(PYTHON) -m venv .venv-peers
	.venv-peers/bin/pip install $(PIP_QUIET) -r bench/requirements-peers.txt 2> >(grep -v "^WARNING: Location" >&2)
	touch $@

.venv-mlserver/.installed:
	test -x .venv-mlserver/bin/python || $(PYTHON) -m venv .venv-mlserver
	.venv-mlserver/bin/pip install $(PIP_QUIET) mlserver==1.7.1 mlserver-xgboost==1.7.1 2> >(grep -v "^WARNING: Location" >&2)
	touch $@

## make bench: ours against floor, seed_style and mlserver in one run; writes bench/RESULTS.md and the plot
bench: $(VENV)/.installed $(FN_VENV)/.installed .venv-peers/.installed .venv-mlserver/.installed system-deps
	$(VENV)/bin/python bench/run.py

## make sweep: our function under each WORKERS x THREADS setting (the README's production settings table)
sweep: $(VENV)/.installed $(FN_VENV)/.installed system-deps
	$(VENV)/bin/python bench/sweep.py

## make load PROFILE=baseline|normal|stress|spike|10x [HOST=url]: Locust headless, CSV + HTML in load/out/
load: $(VENV)/.installed $(FN_VENV)/.installed model
	PROFILE=$(PROFILE) HOST=$(HOST) MODEL_STORE="$(MODEL_STORE)" $(VENV)/bin/python load/run.py

## make reliability: hostile input, storage faults, hot swaps under load, security; prints the tally table
reliability: $(VENV)/.installed $(FN_VENV)/.installed
	$(VENV)/bin/python -m pytest tests/reliability

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(FN_VENV) .pytest_cache

## make traffic: synthetic traffic to a running `make serve` (MASS_FACTOR=1.2 shifts body mass)
MASS_FACTOR ?= 1.0
ROWS ?= 300
traffic: $(VENV)/.installed
	$(VENV)/bin/python scripts/send_traffic.py --url http://$(BIND_HOST):$(PORT) --rows $(ROWS) --mass-factor $(MASS_FACTOR)
