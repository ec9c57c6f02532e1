# duetime — `make up` starts the whole local stack, `make test` runs every check against it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STACK := deploy/local/stack.sh

.PHONY: setup lock audit up down status logs receiver key test lint unit test-stack stack-tests model bench bench-peers schemas clean browser

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

# Where kubectl is installed its kustomize renders the same (tests/unit/test_k8s_manifests.py
# uses it then): the four-minute build is only for machines without it.
KUSTOMIZE_BUILD := $(if $(shell command -v kubectl),,$(KUSTOMIZE))

setup: $(VENV)/.installed $(KUSTOMIZE_BUILD)

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
	$(UV_COMPILE) pyproject.toml --extra dev --extra stack -o $(REQS)/dev.txt
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

# A webhook receiver to try jobs against (127.0.0.1:18999, one line per request; PORT=189xx).
receiver:
	@python3 deploy/local/receiver.py $(or $(PORT),18999)

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
	$(STACK) deps
	deploy/local/with-stack.sh $(MAKE) -s stack-tests

# The tests that share the stack run in STACK_TEST_WORKERS processes, a file per process; then,
# in one process, those marked `alone`: they stop, freeze or flood what the others use (ADR
# 0053). A compose stack started by testcontainers is one per process, so it gets one process.
STACK_TESTS := tests/objects tests/sandbox tests/integration tests/e2e tests/security tests/ops \
	tests/faults tests/ui tests/model
STACK_TEST_WORKERS ?= 3
stack-tests:
	workers=$(STACK_TEST_WORKERS); [ "$${DUETIME_TEST_ENGINE:-}" != containers ] || workers=0; \
	$(VENV)/bin/pytest $(STACK_TESTS) -q -m "not alone" -n $$workers --dist loadfile --durations=15
	$(VENV)/bin/pytest $(STACK_TESTS) -q -m alone --durations=10

# The model checker: `make model SEED=7` replays one history; `make model MINUTES=30` soaks.
SEED ?= 1
MINUTES ?= 0
model: setup
	deploy/local/with-stack.sh $(PY) -m tests.model --seed $(SEED) --minutes $(MINUTES)

test: lint unit audit test-stack

# Every benchmark against the stack (one is started when none is up), ~25 min: the peer
# harness's workloads first (each WIPES the stack and starts it afresh, as the peer harness does),
# then the rest on the last fresh stack; results in docs/benchmarks.md, plots in docs/img/bench/.
# `make bench BENCH=w1,w2-1000,reads` runs some: cron timers recurring read_lag w1 w2 (w2-200
# w2-1000 w2-3000) w3 profiles idle floor instant watcher reads creates overlap kafka model_load. Say what else ran on
# the box: BENCH_CONDITIONS="quiet box, nothing else running" (every figure carries it).
BENCH ?= all
# One executor process, as the dev stack and the tests run; `DUETIME_EXECUTORS=2 make bench`
# compares two (ADR 0040: faster bursts, slower creates while firing).
bench: setup
	bench_on() { [[ ",$(BENCH)," == *",all,"* || ",$(BENCH)," == *",$$1,"* ]]; }; \
	if bench_on cron; then $(PY) -m bench.cron_next_fire; fi
	deploy/local/with-stack.sh bash -c 'set -e; \
	  bench_on() { [[ ",$(BENCH)," == *",all,"* || ",$(BENCH)," == *",$$1,"* ]]; }; \
	  $(PY) -m bench.peer_workloads --select "$(BENCH)"; \
	  if bench_on timers; then $(PY) -m bench.timers; fi; \
	  if bench_on recurring; then $(PY) -m bench.recurring; fi; \
	  if bench_on read_lag; then $(PY) -m bench.read_lag; fi; \
	  if bench_on profiles; then $(PY) -m bench.profiles; fi; \
	  if bench_on idle; then $(PY) -m bench.idle; fi; \
	  if bench_on floor; then $(PY) -m bench.cpu_per_job --label "beside the floor" && \
	    for mode in steady burst creates ingest; do $(PY) -m bench.floor --mode $$mode; done && \
	    $(PY) -m bench.floor --mode seconds --rate 200 --seconds 20; fi; \
	  if bench_on floor || bench_on instant; then $(PY) -m bench.instant_calls; fi; \
	  if bench_on idle_wake; then $(PY) -m bench.idle_wake; fi; \
	  if bench_on watcher; then $(PY) -m bench.watcher_cost; fi; \
	  if bench_on reads; then $(PY) -m bench.reads; fi; \
	  if bench_on creates; then $(PY) -m bench.rest_creates; fi; \
	  if bench_on overlap; then $(PY) -m bench.overlap; fi; \
	  if bench_on kafka; then \
	    if $(PY) -c "import bench.kafka_ingest" 2>/dev/null; then $(PY) -m bench.kafka_ingest; \
	    else echo "bench.kafka_ingest not here yet: skipped"; fi; \
	  fi; \
	  if bench_on model_load; then $(PY) -m bench.model_under_load || echo "model under load: FAILED"; fi; \
	  $(PY) -m bench.side_by_side'

# The peers and duetime in one pass of the peer harness (../shared/peer-bench/README.md): about
# 40 minutes with nothing else running; it runs `make clean` here (wipes .stack) before each
# duetime workload. Its results stay in the harness's results/, not in docs/benchmarks.md.
bench-peers: setup
	$(PY) -m bench.box_speed --label "before the pass"
	../shared/peer-bench/side_by_side.sh .
	$(PY) -m bench.box_speed --label "after the pass"

schemas: setup
	$(PY) -m schemas.export

clean: down
	rm -rf .stack
