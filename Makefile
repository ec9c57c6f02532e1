# duetime — `make up` starts the whole local stack, `make test` runs every check against it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STACK := deploy/local/stack.sh

.PHONY: setup up down status key test lint unit test-stack model bench schemas clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $@

up: setup
	$(STACK) up

down:
	$(STACK) down

status:
	$(STACK) status

# An API key for TENANT, printed once (only its hash is stored); the running gateway reloads.
key: setup
	@test -n "$(TENANT)" || { echo "usage: make key TENANT=<tenant>" >&2; exit 2; }
	@$(PY) -m duetime keys create --tenant '$(TENANT)'

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

unit: setup
	$(VENV)/bin/pytest tests/unit -q

# Runs the stack tests against a running stack; starts one (and stops it after) if none is up.
test-stack: setup
	deploy/local/with-stack.sh $(VENV)/bin/pytest tests/integration tests/e2e tests/faults tests/security tests/model -q

# The model checker: `make model SEED=7` replays one history; `make model MINUTES=30` soaks.
SEED ?= 1
MINUTES ?= 0
model: setup
	deploy/local/with-stack.sh $(PY) -m tests.model --seed $(SEED) --minutes $(MINUTES)

test: lint unit test-stack

bench: setup
	deploy/local/with-stack.sh bash -c '$(PY) -m bench.timers && $(PY) -m bench.recurring && $(PY) -m bench.read_lag'

schemas: setup
	$(PY) -m schemas.export

clean: down
	rm -rf .stack
