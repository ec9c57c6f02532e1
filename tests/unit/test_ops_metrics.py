"""Consumer lag arithmetic and the API latency middleware's labels."""

from __future__ import annotations

import httpx
from aiokafka import TopicPartition
from fastapi import FastAPI
from prometheus_client import REGISTRY

from duetime.http_metrics import UNMATCHED, RequestMetrics
from watcher.consumer_lag import lag_by_topic


def test_lag_is_end_minus_committed_summed_per_topic() -> None:
    a0, a1, b0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
    assert lag_by_topic({a0: 10, a1: 5, b0: 7}, {a0: 15, a1: 5, b0: 7}) == {"a": 5, "b": 0}


def test_lag_never_negative_and_uncommitted_counts_from_zero() -> None:
    a0, a1 = TopicPartition("a", 0), TopicPartition("a", 1)
    # A committed offset past the end (a topic recreated) is no negative lag.
    assert lag_by_topic({a0: 50}, {a0: 20, a1: 4}) == {"a": 4}


def _count(route: str, method: str, status: str) -> float:
    value = REGISTRY.get_sample_value("duetime_http_request_duration_seconds_count",
                                      {"route": route, "method": method, "status": status})
    return value or 0.0


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    app.add_middleware(RequestMetrics)
    return app


async def test_requests_are_timed_by_route_template_not_raw_path() -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    before = _count("/things/{thing_id}", "GET", "200")
    unmatched = _count(UNMATCHED, "GET", "404")
    failed = _count("/boom", "GET", "500")
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for i in range(3):
            assert (await client.get(f"/things/{i}")).status_code == 200
        assert (await client.get("/nowhere/at/all")).status_code == 404
        assert (await client.get("/boom")).status_code == 500
        assert (await client.get("/metrics")).status_code == 404  # untimed path
    assert _count("/things/{thing_id}", "GET", "200") == before + 3
    assert _count(UNMATCHED, "GET", "404") == unmatched + 1  # /metrics is not timed
    assert _count("/boom", "GET", "500") == failed + 1
