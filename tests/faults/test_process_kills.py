"""Killing pipeline processes at the worst moment loses nothing (the mechanisms exist)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from duetime.due_set import DueSet, Popped
from duetime.timeutil import now_ms
from tests.support.jobs import runs
from tests.support.sink import Sink
from tests.support.stack import stack
from tests.support.waiting import eventually


@pytest.fixture
async def slow_sink(make_sink: Callable[..., Awaitable[Sink]]) -> Sink:
    return await make_sink(delay_seconds=4)


async def test_executor_killed_mid_run_still_runs_and_records_it(
    api: httpx.AsyncClient, slow_sink: Sink, path: str
) -> None:
    spec = {"name": "kill-executor", "schedule": {"type": "now"},
            "target": {"type": "http", "url": slow_sink.url(path), "timeout_seconds": 30}}
    job_id = (await api.post("/jobs", json=spec)).json()["job_id"]
    first = await slow_sink.wait_for(path, 1, timeout=15)
    assert len(first) == 1  # the executor is now inside the slow call
    await asyncio.to_thread(stack, "kill", "executor")
    await asyncio.to_thread(stack, "start", "executor")

    async def succeeded() -> list[dict[str, Any]]:
        return [r for r in await runs(api, job_id) if r["status"] == "succeeded"]

    done = await eventually(succeeded, timeout=60, interval=0.5)
    hits = slow_sink.hits_for(path)
    assert len(hits) >= 2  # run again after the lease expired
    assert {h.headers["Idempotency-Key"] for h in hits} == {done[0]["run_id"]}


async def test_dispatcher_killed_between_pop_and_publish_loses_no_entry(
    api: httpx.AsyncClient, sink: Sink, path: str, redis: Redis, pg: asyncpg.Pool[Any]
) -> None:
    await asyncio.to_thread(stack, "kill", "dispatcher")
    try:
        spec = {"name": "kill-dispatcher", "schedule": {"type": "delay", "seconds": 1},
                "target": {"type": "http", "url": sink.url(path)}}
        job_id = (await api.post("/jobs", json=spec)).json()["job_id"]
        due = DueSet(redis, shards=4)
        shard = due.shard_of(job_id)

        async def loaded() -> bool:
            members = await redis.zrange(due.key("due", shard), 0, -1)
            return any(job_id in str(m) for m in members)

        await eventually(loaded, timeout=15)

        # Act as a dispatcher that pops the entry once it is due and dies before publishing it.
        async def pop_ours() -> list[Popped]:
            return [p for p in await due.pop_due(shard, now_ms(), now_ms(), 1000)
                    if p.entry and p.entry.job_id == job_id]

        popped = await eventually(pop_ours, timeout=10)
        assert len(popped) == 1 and popped[0].verdict == "run"
        await asyncio.sleep(0.5)  # the point: with no dispatcher, nothing fires
        assert sink.hits_for(path) == []
    finally:
        await asyncio.to_thread(stack, "start", "dispatcher")
    hits = await sink.wait_for(path, 1, timeout=30)
    assert len(hits) == 1
    await sink.wait_for(path, 2, timeout=2)
    assert len(sink.hits_for(path)) == 1
