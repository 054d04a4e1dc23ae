# mes-gateway — developer entry points. `make demo` and `make test` work on a fresh Debian
# machine: they create the venv, install what is missing, and start the services they need.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed

.PHONY: venv services pglite test test-unit test-integration chaos demo bench lint schema lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(UV) pip install --quiet --python $(PY) -r requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $(STAMP)

# Re-pin every dependency (run by hand; commit the result).
lock:
	$(UV) pip compile --quiet --python-version 3.11 --extra dev pyproject.toml -o requirements.lock

services:
	tools/ensure-services

pglite:
	tools/ensure-pglite

test: venv services pglite
	$(PY) -m pytest -q

test-unit: venv
	$(PY) -m pytest -q tests/unit

test-integration: venv services pglite
	$(PY) -m pytest -q tests/integration

# The fault suite in full: a 90 s database outage, a 100,000-event backlog, and the other
# faults of tests/chaos (its short form runs in `make test`). Prints a table of results.
chaos: venv services
	rm -f .cache/chaos-results.txt && mkdir -p .cache
	MESGW_CHAOS=full MESGW_CHAOS_RESULTS=.cache/chaos-results.txt $(PY) -m pytest -q -s tests/chaos
	@echo "| fault | catch-up | drain rate | events | parts |" && cat .cache/chaos-results.txt

demo: venv services
	tools/demo

# `make bench` runs every benchmark; `make bench BENCH=modbus` (or opcua, rules, ...) some.
bench: venv services
	$(PY) -m bench $(BENCH)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

schema: venv
	$(PY) -m gateway.schema

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache tools/pglite/node_modules
