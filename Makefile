# The two commands a fresh Debian machine needs:
#   make demo   - install, ingest docs/ and answer a question about DeepRecall with sources
#   make test   - install, start the test services (Docker, PostgreSQL+pgvector), lint, type-check, test
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Extras installed for development and tests; see pyproject.toml.
EXTRAS ?= dev,test
QUESTION ?= How does DeepRecall keep the model's code away from the host, and which sandboxes can it use?

.PHONY: install services lint typecheck test test-fast demo bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check --upgrade pip
	# torch first, from the CPU wheel on disk: letting pip pick it pulls a multi-GB CUDA build.
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	$(PIP) install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

services:
	bash scripts/services.sh all

lint: install
	$(VENV)/bin/ruff check deeprecall tests benchmarks examples

typecheck: install
	$(VENV)/bin/mypy

test: install services lint typecheck
	eval "$$(bash scripts/services.sh env)"; export DEEPRECALL_REQUIRE_DOCKER=1 DEEPRECALL_REQUIRE_ISOLATION=1; \
	$(VENV)/bin/pytest -q -rs -p no:cacheprovider --durations=15

# Without the services: docker and postgres tests skip.
test-fast: install lint typecheck
	$(VENV)/bin/pytest -q -rs -p no:cacheprovider

demo: install
	$(VENV)/bin/deeprecall query "$(QUESTION)" --docs docs

bench: install
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) .deeprecall .mypy_cache .ruff_cache
