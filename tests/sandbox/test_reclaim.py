"""A command executor starting again reclaims what its crashed predecessor left (ADR 0031)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from executor.command.sandbox import Sandbox, SandboxSettings
from executor.command.service import reclaim
from executor.command.uids import processes_of

FIRST_UID = 291_000  # apart from the other sandbox tests' uids and every executor's


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another uid")
async def test_leftover_sandbox_processes_and_run_directories_are_reclaimed() -> None:
    sandbox = Sandbox(SandboxSettings(scratch_dir="/var/tmp/duetime-sandbox-tests-reclaim",
                                      first_uid=FIRST_UID, slots=2))
    stale = sandbox.scratch / ("ab" * 12)
    (stale / "home").mkdir(parents=True, exist_ok=True)
    kept = sandbox.scratch / "not-a-run-dir"
    kept.mkdir(exist_ok=True)
    leftover = await asyncio.create_subprocess_exec(
        "sleep", "300", user=FIRST_UID + 1, group=FIRST_UID + 1, extra_groups=[],
        start_new_session=True)
    try:
        assert processes_of(FIRST_UID + 1) == [leftover.pid]
        assert await reclaim(sandbox) == 1
        await asyncio.wait_for(leftover.wait(), 10)
        assert not processes_of(FIRST_UID + 1)
        assert not stale.exists()
        assert kept.is_dir()  # only what a run could have made is removed
    finally:
        if leftover.returncode is None:
            leftover.kill()
            await leftover.wait()
        Path(kept).rmdir()
