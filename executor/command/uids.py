"""Host uids for sandboxes: one per concurrent run, so a run's limits count only its own processes.

RLIMIT_NPROC counts every process of a real uid on the host. Running each sandbox as a uid no
other run (and nothing else on the host) uses makes the process limit a limit of that run, and
lets the executor see whether anything of the run is still alive before the uid is reused.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def processes_of(uid: int) -> list[int]:
    """Live pids on the host whose real uid is `uid`.

    Zombies do not count: the sandbox's PID 1 outlives bwrap for a moment and is then reaped
    by the host's init, whenever that gets to it; a zombie runs nothing and holds nothing.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines()
                          if line.startswith(("Uid:", "State:")))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # exited while we looked
        if int(fields["Uid"].split()[0]) == uid and not fields["State"].strip().startswith(("Z", "X")):
            found.append(int(entry.name))
    return found


class UidPool:
    """Hands out uids first..first+count-1; a uid comes back only once none of its processes live."""

    def __init__(self, first: int, count: int) -> None:
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for uid in range(first, first + count):
            self._free.put_nowait(uid)

    async def acquire(self) -> int:
        return await self._free.get()

    async def release(self, uid: int, wait_seconds: float = 10.0) -> bool:
        """Returns the uid to the pool once it has no process; False if one lingers (the uid is
        then kept out of the pool, loudly, rather than shared with the next run)."""
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while pids := await asyncio.to_thread(processes_of, uid):
            if asyncio.get_running_loop().time() >= deadline:
                log.error("sandbox.uid_quarantined", extra={"uid": uid, "pids": pids[:20]})
                return False
            await asyncio.sleep(0.05)
        self._free.put_nowait(uid)
        return True


def can_switch_uid() -> bool:
    return os.geteuid() == 0
