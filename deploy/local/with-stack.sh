#!/usr/bin/env bash
# Runs a command against a real stack:
# - a running local stack is used as it is;
# - otherwise, where a container engine answers (`docker info`) and DUETIME_TEST_ENGINE is not
#   "local", the tests start deploy/docker-compose.yml themselves through testcontainers;
# - otherwise a local stack is started for the command and stopped afterwards, so `make test`
#   on a fresh machine leaves nothing running.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if "$here/stack.sh" status >/dev/null 2>&1; then
  exec "$@"
fi
if [[ "${DUETIME_TEST_ENGINE:-}" != "local" ]] && docker info >/dev/null 2>&1; then
  DUETIME_TEST_ENGINE=containers exec "$@"
fi
"$here/stack.sh" up
status=0
"$@" || status=$?
"$here/stack.sh" down || true
exit "$status"
