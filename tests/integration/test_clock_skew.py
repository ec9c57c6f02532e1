"""An executor whose clock runs 500 ms ahead never fires early (defect 12, ADR 0012).

The executor runs in-process against the real Redis (the reference clock), Kafka and an HTTP
sink, on a due-set prefix and topics of its own. Its local wall clock is faked 500 ms ahead; the
sink and Redis share the real clock of this machine, so the sink's receive time is the firing
instant by the reference clock.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from duetime.clock import ReferenceClock, wall_ms
from duetime.due_set import Entry
from duetime.timeutil import from_ms, now_ms
from schemas.events import RunRequested
from tests.integration import test_executor_in_process as in_process
from tests.integration.test_executor_in_process import LEASE_MS, Rig
from tests.support.sink import Sink

SKEW_MS = 500
rig = in_process.rig  # the in-process executor's rig: own due-set prefix and topics


def _ahead() -> float:
    return wall_ms() + SKEW_MS


async def _request(rig: Rig, url: str, due_ms: int) -> tuple[RunRequested, Entry]:
    entry = Entry(f"job-{uuid.uuid4().hex[:12]}", 1, due_ms, 1, 5)
    await rig.due.load(entry.job_id, 1, "active", None, [])
    at = datetime.fromtimestamp(due_ms / 1000, UTC)
    req = RunRequested(run_id=entry.run_id, job_id=entry.job_id, tenant="t", job_version=1,
                       scheduled_at=at, due_at=at, attempt=1, priority=5,
                       target={"type": "http", "url": url},  # type: ignore[arg-type]
                       retry={"max_attempts": 1},  # type: ignore[arg-type]
                       member=entry.member(), dispatched_at=from_ms(now_ms()))
    return req, entry


async def test_an_executor_500_ms_ahead_never_fires_before_the_scheduled_instant(
    rig: Rig, sink: Sink, path: str,
) -> None:
    clock = ReferenceClock(rig.due.server_time_ms, local=_ahead)
    executor = rig.executor()
    executor.clock = clock
    # Dispatched early, as the dispatcher does (its lookahead), and a few firings apart.
    start = now_ms()
    runs = [await _request(rig, sink.url(f"{path}/{i}"), start + 700 + 60 * i) for i in range(8)]
    for req, entry in runs:
        assert await rig.due.claim(entry, req.member, executor.id, now_ms(), LEASE_MS) == "ok"

    await asyncio.wait_for(asyncio.gather(*(
        executor.execute(req, entry, req.model_dump_json().encode()) for req, entry in runs)), 20)

    assert clock.sample is not None
    assert clock.sample.offset_ms == pytest.approx(-SKEW_MS, abs=20)  # the skew was measured
    for i, (_, entry) in enumerate(runs):
        [hit] = sink.hits_for(f"{path}/{i}")
        early_ms = entry.scheduled_ms - hit.received_at * 1000
        assert early_ms <= 0, f"run {i} fired {early_ms:.1f} ms before its scheduled instant"
        assert -early_ms < 250  # and on time, not merely late
        [final] = await rig.statuses(entry)
        assert final["status"] == "succeeded"
        assert 0 <= final["lateness_ms"] < 250
