# The two commands a fresh Debian machine needs:
#   make demo   - install, ingest docs/ and answer a question about DeepRecall with sources
#                 (no OPENAI_API_KEY / DEEPRECALL_BASE_URL: on the embedded local model, set up on first run)
#   make test   - install, start the test services (Docker, PostgreSQL+pgvector, Chromium, Redis), install the local LLM,
#                 lint, type-check, test (the realmodel tests run on it)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Extras installed for development and tests; see pyproject.toml.
EXTRAS ?= dev,test
QUESTION ?= What does the default local sandbox use to isolate the model's code?

.PHONY: install services local-llm lint typecheck test test-fast demo bench clean

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

# llama-cpp-python (compiled once into ~/.cache/deeprecall/wheels, ~10 min on 2 cores) and the model (~1.1 GB).
local-llm: install
	bash scripts/local_llm.sh all

lint: install
	$(VENV)/bin/ruff check deeprecall tests benchmarks examples

typecheck: install
	$(VENV)/bin/mypy

# The local LLM's compile (the longest step on a fresh machine) runs while the services start.
test: install lint typecheck
	bash scripts/local_llm.sh all & llm=$$!; bash scripts/services.sh all; ok=$$?; wait $$llm && [ $$ok -eq 0 ]
	eval "$$(bash scripts/services.sh env)"; \
	export DEEPRECALL_REQUIRE_DOCKER=1 DEEPRECALL_REQUIRE_ISOLATION=1 DEEPRECALL_REQUIRE_REALMODEL=1 \
	       DEEPRECALL_REQUIRE_BROWSER=1 DEEPRECALL_REQUIRE_REDIS=1 DEEPRECALL_REQUIRE_FAULTS=1; \
	$(VENV)/bin/pytest -q -rs -p no:cacheprovider --durations=15

# Without the services: docker and postgres tests skip.
test-fast: install lint typecheck
	$(VENV)/bin/pytest -q -rs -p no:cacheprovider

demo: install
	if [ -z "$$OPENAI_API_KEY$$DEEPRECALL_BASE_URL" ]; then bash scripts/local_llm.sh all; fi
	$(VENV)/bin/deeprecall query "$(QUESTION)" --docs docs

bench: install
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) .deeprecall .mypy_cache .ruff_cache
