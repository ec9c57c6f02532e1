"""The command executor at the due instant: a failed start verdict is asked again, and an
attempt whose lease was lost meanwhile runs nothing and records nothing (ADR 0043)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from redis.exceptions import ConnectionError as RedisConnectionError

from duetime.clock import ReferenceClock, wall_ms
from duetime.due_set import DueSet, Entry, Start, StartVerdict
from duetime.objects import ObjectStore
from duetime.timeutil import to_ms
from executor.command.runner import CommandRunner
from executor.command.sandbox import Sandbox
from schemas.events import CommandRunRequested


class LosingDueSet:
    """Fails the first `fail` start verdicts, then answers `lost`; records everything else."""

    def __init__(self, fail: int) -> None:
        self.fail, self.starts, self.completed = fail, 0, 0

    async def start(self, entry: Entry, overlap: str, now_ms: int, executor_id: str = "",
                    member: str = "") -> StartVerdict:
        self.starts += 1
        if self.fail > 0:
            self.fail -= 1
            raise RedisConnectionError("Connection refused")
        return StartVerdict(Start.LOST)

    async def complete(self, *args: Any, **kwargs: Any) -> None:
        self.completed += 1


class Recorder:
    """Stands for the producer and the sandbox: whatever reaches it is recorded."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append("send")

    async def run(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("run")
        raise AssertionError("a lost attempt must not run")


async def _this_machine() -> float:
    return wall_ms()


async def test_a_lost_lease_after_a_failed_start_runs_and_records_nothing() -> None:
    due, recorder = LosingDueSet(fail=2), Recorder()
    runner = CommandRunner(cast(DueSet, due), recorder, cast(ObjectStore, None),
                           cast(Sandbox, recorder), lease_ms=10_000, executor_id="c1",
                           clock=ReferenceClock(_this_machine))
    past = datetime.now(UTC) - timedelta(seconds=1)
    entry = Entry("job-1", 1, to_ms(past), 1, 5)
    req = CommandRunRequested(
        run_id=entry.run_id, job_id=entry.job_id, tenant="t", job_version=1, scheduled_at=past,
        due_at=past, attempt=1, priority=5, member=entry.member(), dispatched_at=past,
        target={"type": "command", "command": ["true"]},  # type: ignore[arg-type]
        retry={"max_attempts": 1, "jitter": False})  # type: ignore[arg-type]
    await asyncio.wait_for(runner.attempt(req, entry), timeout=10)
    assert due.starts == 3  # asked again after each failure
    assert recorder.calls == [] and due.completed == 0
