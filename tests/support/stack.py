"""Access to the local stack the tests run against (started by `make test` / `make up`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "local" / "stack.sh"


def stack_env() -> dict[str, str]:
    env: dict[str, str] = {}
    path = ROOT / ".stack" / "env"
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip()
    env.update({k: v for k, v in os.environ.items() if k.startswith("DUETIME_")})
    # A stack started before .stack/env carried the id secret still has it in its own file.
    secret_file = ROOT / ".stack" / "id_secret"
    if "DUETIME_ID_SECRET" not in env and secret_file.exists():
        env["DUETIME_ID_SECRET"] = secret_file.read_text().strip()
    return env


def stack(*args: str, timeout: float = 180) -> None:
    """Run a stack.sh subcommand (e.g. `stack("kill", "executor")`), or its compose equivalent
    when the tests run against containers."""
    if os.environ.get("DUETIME_TEST_ENGINE") == "containers":
        from tests.support.containers import compose_command

        verb, service = args
        subprocess.run(compose_command(verb, service), check=True, timeout=timeout, cwd=ROOT)
        return
    subprocess.run([str(STACK), *args], check=True, timeout=timeout, cwd=ROOT)


SERVICES = ("job_service", "search_service", "writer", "watcher", "dispatcher", "executor")
RUN_DIR = ROOT / ".stack" / "run"
SUPERVISOR_CONF = ROOT / ".stack" / "supervisor" / "supervisord.conf"


def service_pid(instance: str) -> int | None:
    """The pid `.stack/run/<instance>.pid` names when that process lives and runs the service
    (the fault tests and the model checker signal it by this file)."""
    try:
        pid = int((RUN_DIR / f"{instance}.pid").read_text().split()[0])
        args = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return pid if args[-2:] == [b"run", instance.split("-", 1)[0].encode()] else None


def service_port(instance: str) -> int:
    """The HTTP port of a supervised service instance, from the environment it was started with."""
    for entry in (RUN_DIR / f"{instance}.env").read_bytes().split(b"\0"):
        if entry.startswith(b"DUETIME_HTTP_PORT="):
            return int(entry.split(b"=", 1)[1])
    raise LookupError(f"no DUETIME_HTTP_PORT in .stack/run/{instance}.env")


def supervised_state(instance: str) -> str:
    """What supervisord says of a service instance: RUNNING, STOPPED, BACKOFF, … ("" if unknown)."""
    ctl = Path(sys.executable).with_name("supervisorctl")
    done = subprocess.run([str(ctl), "-c", str(SUPERVISOR_CONF), "status", instance],
                          capture_output=True, text=True, timeout=30)
    fields = done.stdout.split()
    return fields[1] if len(fields) > 1 and fields[0] == instance else ""
