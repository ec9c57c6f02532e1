#!/usr/bin/env bash
# Runs a command against the local stack: uses a running stack as it is, or starts one for the
# command and stops it afterwards (so `make test` on a fresh machine leaves nothing running).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if "$here/stack.sh" status >/dev/null 2>&1; then
  exec "$@"
fi
"$here/stack.sh" up
status=0
"$@" || status=$?
"$here/stack.sh" down || true
exit "$status"
