"""Which statuses a run goes through: `running` only for a call that outlasts a short delay.

A fast call goes from `queued` straight to its final status, which carries `started_at` and
`lateness_ms`; a slow one is seen `running` while the call is under way (ADR 0024).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from schemas.topics import RUNS_STATUS
from tests.support.jobs import Cleanup, http_job, wait_runs
from tests.support.kafka import find_messages, kafka_settings
from tests.support.sink import Sink


def _once(url: str, seconds: float) -> dict[str, Any]:
    at = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    return http_job(url, {"type": "once", "at": at})


async def test_a_slow_call_is_seen_running_before_it_finishes(
    api: httpx.AsyncClient, jobs: Cleanup, make_sink: Callable[..., Awaitable[Sink]], path: str,
) -> None:
    slow = await make_sink(delay_seconds=2)  # holds the request 2 s before answering
    job_id = await jobs.create(api, _once(slow.url(path), 1))
    [running] = await wait_runs(api, job_id, "running", timeout=20)
    # Statuses only move forward: seen running, the call had not finished yet.
    assert running["started_at"] is not None and running["finished_at"] is None
    [done] = await wait_runs(api, job_id, "succeeded", timeout=20)
    assert done["run_id"] == running["run_id"] and len(slow.hits_for(path)) == 1


async def test_a_fast_call_finishes_without_a_running_status(
    api: httpx.AsyncClient, env: dict[str, str], jobs: Cleanup, sink: Sink, path: str,
) -> None:
    job_id = await jobs.create(api, _once(sink.url(path), 1))
    [done] = await wait_runs(api, job_id, "succeeded", timeout=20)
    assert done["started_at"] is not None and isinstance(done["lateness_ms"], int)
    # In partition order: a `running` would come second, before the final status.
    events = await find_messages(kafka_settings(env), RUNS_STATUS,
                                 lambda m: m.get("run_id") == done["run_id"], count=2, timeout=60)
    assert [e["status"] for e in events] == ["queued", "succeeded"]
    final = events[-1]
    assert final["started_at"] and final["lateness_ms"] >= 0
