"""Timers end to end: gateway → job_service → Kafka → writer → … → executor → sink → runs."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.support.jobs import runs
from tests.support.sink import Sink
from tests.support.waiting import eventually


async def test_three_second_timer_fires_once_with_its_run_id(
    api: httpx.AsyncClient, sink: Sink, path: str
) -> None:
    created = time.time()
    resp = await api.post("/timers", json={"hours": 0, "minutes": 0, "seconds": 3,
                                           "url": sink.url(path)})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["time_left"] == 3
    timer_id = body["id"]

    left = await eventually(lambda: _time_left(api, timer_id))
    assert 0 <= left[0] <= 3

    hits = await sink.wait_for(path, 1, timeout=20)
    assert len(hits) == 1
    assert hits[0].received_at >= created + 3 - 0.001, "fired early"

    async def succeeded() -> list[dict[str, Any]]:
        return [r for r in await runs(api, timer_id) if r["status"] == "succeeded"]

    done = await eventually(succeeded, timeout=20)
    assert len(done) == 1
    run = done[0]
    assert hits[0].headers["Idempotency-Key"] == run["run_id"]
    assert hits[0].headers["X-Duetime-Run-Id"] == run["run_id"]
    assert hits[0].headers["X-Duetime-Job-Id"] == timer_id
    assert hits[0].headers["X-Duetime-Attempt"] == "1"
    assert isinstance(run["lateness_ms"], int) and run["lateness_ms"] >= 0
    assert run["http_status"] == 200

    # Exactly once: nothing more arrives, and the timer reports 0 left.
    await sink.wait_for(path, 2, timeout=2)
    assert len(sink.hits_for(path)) == 1
    status = (await api.get(f"/timers/{timer_id}")).json()
    assert status["time_left"] == 0


async def _time_left(api: httpx.AsyncClient, timer_id: str) -> tuple[int] | None:
    resp = await api.get(f"/timers/{timer_id}")
    return (resp.json()["time_left"],) if resp.status_code == 200 else None


async def test_unknown_timer_is_404_problem(api: httpx.AsyncClient) -> None:
    resp = await api.get("/timers/doesnotexist")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["status"] == 404


async def test_another_tenant_cannot_see_a_timer(
    api: httpx.AsyncClient, api_b: httpx.AsyncClient, sink: Sink, path: str
) -> None:
    resp = await api.post("/timers", json={"seconds": 3600, "url": sink.url(path)})
    timer_id = resp.json()["id"]
    await eventually(lambda: _time_left(api, timer_id))
    assert (await api_b.get(f"/timers/{timer_id}")).status_code == 404
    assert (await api_b.get(f"/jobs/{timer_id}")).status_code == 404
    assert (await api_b.delete(f"/jobs/{timer_id}")).status_code == 404
    assert (await api.delete(f"/jobs/{timer_id}")).status_code == 202
