"""What supervisord runs for one duetime service instance of the local stack (ADR 0034).

    supervised_service.py <instance> [--nice N]

It becomes the service (exec, same pid) after three things supervisord cannot do itself:
- the environment is the one `stack.sh start <instance>` had (`.stack/run/<instance>.env`,
  NUL-separated, 0600), so a restart by supervisord gets what the start got, and nothing of
  supervisord's own environment;
- `.stack/run/<instance>.pid` holds the service's real pid on every (re)start: the fault tests
  and the model checker signal it (SIGSTOP, SIGKILL) by that file;
- a restart after a crash waits like Kubernetes' CrashLoopBackOff: immediately after a run that
  lasted RESET_AFTER seconds, then 1, 2, 4 … up to MAX_DELAY seconds while the crashes keep
  coming (supervisord's own backoff only covers processes that die within `startsecs`, and
  gives up for good after `startretries`). `stack.sh start` removes the state file: a start by
  hand never waits.

Standard library only: it runs before the service's imports and must not slow a restart down.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RUN_DIR = Path(__file__).resolve().parents[2] / ".stack" / "run"
FIRST_DELAY = 1.0
MAX_DELAY = 30.0
RESET_AFTER = 60.0


@dataclass(frozen=True)
class Restarts:
    """The last start of an instance and how many quick crashes came before it."""

    started: float
    streak: int


def next_start(previous: Restarts | None, now: float) -> tuple[float, Restarts]:
    """How long to wait before this start, and the state to keep for the next one."""
    if previous is None or now - previous.started >= RESET_AFTER:
        return 0.0, Restarts(now, 0)
    streak = previous.streak + 1
    delay = min(MAX_DELAY, FIRST_DELAY * 2 ** (streak - 1))
    return delay, Restarts(now + delay, streak)


def read_restarts(path: Path) -> Restarts | None:
    try:
        data = json.loads(path.read_text())
        return Restarts(float(data["started"]), int(data["streak"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no state (a start by hand) or a torn one: start now


def parse_env(raw: bytes) -> dict[str, str]:
    """`env -0` output: NAME=value entries, NUL-separated (values may hold newlines)."""
    env: dict[str, str] = {}
    for entry in raw.decode("utf-8", "surrogateescape").split("\0"):
        name, sep, value = entry.partition("=")
        if sep and name:
            env[name] = value
    return env


def apply_niceness(instance: str, nice: int, renice: Callable[[int], int] = os.nice) -> None:
    """Lower (or, where permitted, raise) this process's CPU priority before the exec (ADR
    0042). Raising it needs root: elsewhere the service runs at the default priority."""
    try:
        renice(nice)
    except PermissionError:
        print(f"=== supervisord: {instance}: niceness {nice} not permitted; left at 0", flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("instance")
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)
    instance: str = args.instance
    service = instance.split("-", 1)[0]
    env_file = RUN_DIR / f"{instance}.env"
    try:
        env = parse_env(env_file.read_bytes())
    except OSError as exc:
        sys.exit(f"{instance}: no environment at {env_file} ({exc}): start it with stack.sh start")
    state = RUN_DIR / f"{instance}.restarts"
    delay, restarts = next_start(read_restarts(state), time.time())
    if delay:
        print(f"=== supervisord: {instance} exited after less than {RESET_AFTER:g} s of running, "
              f"{restarts.streak} time(s) in a row: starting it again in {delay:g} s", flush=True)
        time.sleep(delay)
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"started": restarts.started, "streak": restarts.streak}))
    tmp.replace(state)
    (RUN_DIR / f"{instance}.pid").write_text(f"{os.getpid()}\n")
    if args.nice:
        apply_niceness(instance, args.nice)
    # Exec, not a child: the pid supervisord and the pid file know is the service's own.
    os.execve(sys.executable, [sys.executable, "-m", "duetime", "run", service], env)  # noqa: S606


if __name__ == "__main__":
    main(sys.argv[1:])
