# duetime — `make up` starts the whole local stack, `make test` runs every check against it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STACK := deploy/local/stack.sh

.PHONY: setup lock audit up down status key test lint unit test-stack model bench schemas clean browser

REQS := requirements
# Hashes of every file of every locked version (so --require-hashes installs on any platform), and
# no index or find-links line: where packages come from is pip's configuration, not the lock's.
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--no-emit-index-url --no-emit-find-links --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

setup: $(VENV)/.installed

# pip, setuptools (duetime's build backend) and uv, hash-checked before anything else is installed.
$(VENV)/.bootstrapped: $(REQS)/bootstrap.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(REQS)/bootstrap.txt
	touch $@

# Every dependency from the lock, hash-checked; then duetime itself without dependencies, built
# by the locked setuptools (no build isolation: it would download an unchecked one).
$(VENV)/.installed: $(VENV)/.bootstrapped $(REQS)/dev.txt pyproject.toml
	$(PY) -m pip install -q --require-hashes -r $(REQS)/dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $@

# Recompiles the lockfiles from pyproject.toml, keeping their pins where they still fit
# (`make lock UPGRADE=1` takes the newest). The runtime lock is constrained by the dev lock, so the
# image runs the versions the tests ran; faust-bench is its own environment (it pins click < 8.4).
lock: $(VENV)/.bootstrapped
	$(UV_COMPILE) $(REQS)/bootstrap.in -o $(REQS)/bootstrap.txt
	$(UV_COMPILE) pyproject.toml --extra dev -o $(REQS)/dev.txt
	$(UV_COMPILE) pyproject.toml --constraint $(REQS)/dev.txt -o $(REQS)/runtime.txt
	$(UV_COMPILE) pyproject.toml --extra faust-bench -o $(REQS)/faust-bench.txt

# Known vulnerabilities in the locked packages. Fails on any; AUDIT_STRICT=1 also fails on a
# package it could not audit (the vulnerability service unreachable: see docs/security.md).
PIP_AUDIT := $(VENV)/bin/pip-audit --require-hashes --disable-pip --progress-spinner off \
	$(if $(AUDIT_STRICT),--strict)
audit: setup
	$(PIP_AUDIT) -r $(REQS)/dev.txt
	$(PIP_AUDIT) -r $(REQS)/faust-bench.txt

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

# The dashboard's browser tests drive Debian's chromium (Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null || { \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

# Runs the stack tests against a running stack; starts one (and stops it after) if none is up.
test-stack: setup browser
	deploy/local/with-stack.sh $(VENV)/bin/pytest tests/integration tests/e2e tests/security tests/ops tests/faults tests/ui tests/model -q

# The model checker: `make model SEED=7` replays one history; `make model MINUTES=30` soaks.
SEED ?= 1
MINUTES ?= 0
model: setup
	deploy/local/with-stack.sh $(PY) -m tests.model --seed $(SEED) --minutes $(MINUTES)

test: lint unit audit test-stack

bench: setup
	$(PY) -m bench.cron_next_fire
	deploy/local/with-stack.sh bash -c '$(PY) -m bench.timers && $(PY) -m bench.recurring && $(PY) -m bench.read_lag'

schemas: setup
	$(PY) -m schemas.export

clean: down
	rm -rf .stack
