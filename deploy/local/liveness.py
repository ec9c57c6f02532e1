"""The local stack's liveness probe: a hung service is killed so supervisord starts it again.

supervisord restarts a service that exits; one that hangs (a deadlock, a blocked event loop, a
SIGSTOP) keeps running and fires nothing. Kubernetes answers that with a liveness probe, and
this is the same thing for the local stack (ADR 0034): a supervisord event listener that, on
every TICK_5, asks each running service instance for `/healthz` and, after FAILURES answers in
a row missing (none within TIMEOUT seconds), kills the instance's process group with SIGKILL.
supervisord sees an exit it did not ask for and starts it again (with its crash backoff).

Instances and ports come from what `stack.sh start` left in `.stack/run/` (`<inst>.env`, the
environment it started with, and `<inst>.pid`, the real pid, both kept by
supervised_service.py), so no RPC to supervisord is needed. Standard library only, like
supervised_service.py. Settings: DUETIME_LIVENESS_FAILURES (6), DUETIME_LIVENESS_TIMEOUT_SECONDS
(3); six 5 s ticks make about 30 s of silence before a kill, longer than any pause the stack
treats as normal (a GC pause, a frozen process in the fault tests, a saturated loop under load).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

RUN_DIR = Path(__file__).resolve().parents[2] / ".stack" / "run"
FAILURES = int(os.environ.get("DUETIME_LIVENESS_FAILURES", "6"))
TIMEOUT = float(os.environ.get("DUETIME_LIVENESS_TIMEOUT_SECONDS", "3"))


@dataclass
class Probes:
    """Missed answers in a row per (instance, pid): a new pid starts from nothing."""

    failures: int = FAILURES
    missed: dict[tuple[str, int], int] = field(default_factory=dict)

    def record(self, results: dict[tuple[str, int], bool]) -> list[tuple[str, int]]:
        """Record one round of answers (True: it answered); returns those to kill now."""
        self.missed = {key: 0 if ok else self.missed.get(key, 0) + 1
                       for key, ok in results.items()}
        return [key for key, n in self.missed.items() if n >= self.failures]


def instances(run_dir: Path = RUN_DIR) -> dict[str, tuple[int, int]]:
    """Each supervised service instance that runs now: its (pid, HTTP port)."""
    found: dict[str, tuple[int, int]] = {}
    for env_file in run_dir.glob("*.env"):
        name = env_file.name.removesuffix(".env")
        try:
            pid = int((run_dir / f"{name}.pid").read_text().split()[0])
            env = dict(entry.split(b"=", 1) for entry in env_file.read_bytes().split(b"\0")
                       if b"=" in entry)
            port = int(env[b"DUETIME_HTTP_PORT"])
        except (OSError, ValueError, IndexError, KeyError):
            continue
        if ours(pid):
            found[name] = (pid, port)
    return found


def ours(pid: int, supervisord: int | None = None) -> bool:
    """`pid` is a service our supervisord runs: its child, leading its own process group. A pid
    file left behind (the instance stopped; the number since reused by anything) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    ppid, pgrp = (int(x) for x in stat.rsplit(")", 1)[1].split()[1:3])
    return ppid == (os.getppid() if supervisord is None else supervisord) and pgrp == pid


def answers(port: int, timeout: float = TIMEOUT) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:  # refused, reset, timed out: a starting service refuses too, briefly
        return False


def probe_round(probes: Probes, pool: ThreadPoolExecutor) -> None:
    running = instances()
    asked = {name: pool.submit(answers, port) for name, (_, port) in running.items()}
    results = {(name, running[name][0]): f.result() for name, f in asked.items()}
    for name, pid in probes.record(results):
        say(name, pid, f"no answer to /healthz {probes.failures} times in a row: killed so "
                       "supervisord starts it again")
        try:
            os.killpg(pid, signal.SIGKILL)  # the service leads its own process group
        except OSError as exc:
            say(name, pid, f"kill failed: {exc!r}")
        probes.missed.pop((name, pid), None)


def say(name: str, pid: int, event: str) -> None:
    line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "level": "warning",
            "logger": "liveness", "event": event, "instance": name, "pid": pid}
    print(json.dumps(line), file=sys.stderr, flush=True)


def main() -> None:
    """supervisord's event listener protocol: READY, a header line and its payload, RESULT."""
    probes = Probes()
    with ThreadPoolExecutor(max_workers=16) as pool:
        while True:
            sys.stdout.write("READY\n")
            sys.stdout.flush()
            header = dict(token.split(":", 1) for token in sys.stdin.readline().split())
            sys.stdin.read(int(header.get("len", "0")))
            if header.get("eventname", "").startswith("TICK"):
                probe_round(probes, pool)
            sys.stdout.write("RESULT 2\nOK")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
