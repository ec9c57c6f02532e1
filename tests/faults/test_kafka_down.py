"""With Kafka stopped, writes are refused with 503 and nothing is half-written."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx

from tests.support.jobs import Cleanup, http_job
from tests.support.sink import Sink
from tests.support.stack import stack
from tests.support.waiting import eventually


async def test_writes_get_503_while_kafka_is_down_and_work_after(
    api: httpx.AsyncClient, pg: asyncpg.Pool[Any], sink: Sink, path: str, jobs: Cleanup
) -> None:
    name = f"kafka-down-{uuid.uuid4().hex}"
    # Firing through the restart keeps every producer busy: after it, a producer whose sequence
    # state the broker lost must be replaced, or nothing is ever produced again.
    await jobs.create(api, http_job(sink.url(path + "/busy"), {"type": "interval",
                                                                "every_seconds": 1}))
    await sink.wait_for(path + "/busy", 2, timeout=10)
    await asyncio.to_thread(stack, "stop", "kafka")
    try:
        resp = await api.post("/jobs", json={
            "name": name, "schedule": {"type": "delay", "seconds": 1},
            "target": {"type": "http", "url": sink.url(path)}})
        assert resp.status_code == 503, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert int(resp.headers["retry-after"]) > 0
        timer = await api.post("/timers", json={"seconds": 1, "url": sink.url(path)})
        assert timer.status_code == 503
    finally:
        await asyncio.to_thread(stack, "start", "kafka")

    # Once Kafka is back the pipeline works again, and the refused job never appears.
    async def accepted() -> httpx.Response | None:
        resp = await api.post("/timers", json={"seconds": 1, "url": sink.url(path + "/after")})
        return resp if resp.status_code == 201 else None

    await eventually(accepted, timeout=60, interval=1)
    assert len(await sink.wait_for(path + "/after", 1, timeout=60)) == 1
    busy = len(sink.hits_for(path + "/busy"))
    assert len(await sink.wait_for(path + "/busy", busy + 3, timeout=15)) >= busy + 3
    assert await pg.fetchval("SELECT count(*) FROM jobs WHERE name = $1", name) == 0
    assert sink.hits_for(path) == []
