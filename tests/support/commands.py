"""Helpers for command-job tests: the command executors of the local stack, and a watcher of
the sandboxed processes themselves (as root, the host's /proc shows every sandbox's)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from tests.support.stack import ROOT, stack

RUN_DIR = ROOT / ".stack" / "run"


def running(instance: str) -> bool:
    pid_file = RUN_DIR / f"{instance}.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except (ValueError, ProcessLookupError):
        return False
    return True


@contextlib.asynccontextmanager
async def command_executor(instance: str = "command_executor") -> AsyncIterator[None]:
    """The instance running for the block; stopped after it only if this started it."""
    started = not running(instance)
    if started:
        await asyncio.to_thread(stack, "start", instance)
    try:
        yield
    finally:
        if started:
            await asyncio.to_thread(stack, "stop", instance)


def processes_with(marker: str) -> list[int]:
    """Live host pids of shells whose last argument ($0 of `sh -c SCRIPT MARKER`) is `marker`.

    Only the shell itself: bwrap's own processes carry the command line too, as arguments.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = next((line for line in (entry / "status").read_text().splitlines()
                          if line.startswith("State:")), "")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        while argv and argv[-1] == b"":
            argv.pop()
        if (len(argv) > 1 and argv[0].endswith(b"sh") and argv[-1] == marker.encode()
                and "Z" not in state.split(":", 1)[-1].split()[:1]):
            found.append(int(entry.name))
    return found


class Concurrency:
    """Samples, every `interval` seconds, how many runs of each marker are alive at once."""

    def __init__(self, markers: list[str], interval: float = 0.05) -> None:
        self.markers, self.interval = markers, interval
        self.most: dict[str, int] = dict.fromkeys(markers, 0)
        self.samples = 0
        self._task: asyncio.Task[Any] | None = None

    async def _watch(self) -> None:
        while True:
            counts = await asyncio.to_thread(self._count)
            for marker, n in counts.items():
                self.most[marker] = max(self.most[marker], n)
            self.samples += 1
            await asyncio.sleep(self.interval)

    def _count(self) -> dict[str, int]:
        # One `sh` per run carries the marker as its $0: count those.
        return {m: len(processes_with(f"run-of-{m}")) for m in self.markers}

    async def __aenter__(self) -> Concurrency:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
