"""The real sandbox (bubblewrap), running real processes: no fakes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from executor.command.sandbox import Sandbox, SandboxSettings
from executor.command.uids import processes_of
from executor.egress import EgressPolicy
from tests.support.objects import s3_settings, store

__all__ = ["s3_settings", "store"]

SLOTS = 8
# Host uids of their own, apart from a command executor's default range (200000+) and from
# test_reclaim.py's (291000+); one range per pytest-xdist worker (ADR 0053), so a test that
# counts its sandboxes' processes by uid counts its own process's only.
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
assert WORKER < 64, "the uid ranges of 64 workers reach test_reclaim.py's"
FIRST_UID = 290_000 + WORKER * SLOTS


@pytest.fixture(scope="session")
def sandbox() -> Sandbox:
    # The local stack's allowlist (DUETIME_EGRESS_ALLOW): the test sinks' loopback ports only.
    return Sandbox(SandboxSettings(scratch_dir=f"/var/tmp/duetime-sandbox-tests-{WORKER}",
                                   first_uid=FIRST_UID, slots=SLOTS),
                   EgressPolicy.parse("127.0.0.1/32:18900-18999"))


def sandbox_processes() -> list[int]:
    """Host pids running as any of the tests' sandbox uids."""
    return [pid for uid in range(FIRST_UID, FIRST_UID + SLOTS) for pid in processes_of(uid)]


def processes_with(token: str, program: str | None = None) -> list[int]:
    """Host pids with `token` among their arguments (and, if given, running `program`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if token.encode() in argv and (program is None or argv[0] == program.encode()):
                found.append(int(entry.name))
    return found


async def eventually(check: object, seconds: float = 30.0) -> None:
    """Waits (bounded) until `check()` is true; fails the test if it never is."""
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        if loop.time() > deadline:
            pytest.fail(f"still not true after {seconds} s: {check}")
        await asyncio.sleep(0.05)


class Collected:
    """An output sink that keeps what it is given, and can say when something arrived."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.arrived = asyncio.Event()

    async def write(self, chunk: bytes) -> None:
        self.data += chunk
        self.arrived.set()

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")
