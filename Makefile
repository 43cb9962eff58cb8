# es-serverless: `make up` runs the platform here, `make test` runs the suite.
# Both set up what they need (virtualenv, wheels, engine jars) once, idempotently.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup up down test bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)
	$(PY) -m libs.devrun setup

up: setup
	$(PY) -m libs.devrun up

down:
	$(PY) -m libs.devrun down

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/run_all.py

clean: down
	rm -rf .state
