"""Access to the local stack the tests run against (started by `make test` / `make up`)."""

from __future__ import annotations

import os
import subprocess
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
