# duetime — `make up` starts the whole local stack, `make test` runs every check against it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STACK := deploy/local/stack.sh

.PHONY: setup lock audit up down status logs key test lint unit test-stack model bench schemas clean

REQS := requirements
# Hashes of every file of every locked version (so --require-hashes installs on any platform), and
# no index or find-links line: where packages come from is pip's configuration, not the lock's.
UV_COMPILE := $(VENV)/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--no-emit-index-url --no-emit-find-links --custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

# kustomize renders deploy/k8s for tests/unit/test_k8s_manifests.py (ADR 0030): built once from
# the Go module proxy at a pinned version (checked against the Go checksum database) and kept
# in .venv, so tests fetch nothing.
KUSTOMIZE_VERSION := v5.7.1
KUSTOMIZE := $(VENV)/kustomize-$(KUSTOMIZE_VERSION)/kustomize

setup: $(VENV)/.installed $(KUSTOMIZE)

$(KUSTOMIZE):
	@command -v go >/dev/null || { echo "go is required to build kustomize (deploy/k8s)"; exit 1; }
	GOBIN=$(abspath $(dir $@)) GOTOOLCHAIN=local go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

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

# Every component's log, readable and followed: `make logs ARGS="executor --level warning"`,
# `make logs ARGS="--match <job id>"` (python -m duetime logs --help).
logs: setup
	@$(PY) -m duetime logs $(ARGS)

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
	deploy/local/with-stack.sh $(VENV)/bin/pytest tests/integration tests/e2e tests/security tests/ops tests/faults tests/model -q

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
