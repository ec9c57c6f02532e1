"""Overlap, retry, timeout and target options through the gateway."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest
from aiokafka.admin import NewTopic

from duetime import kafka
from schemas.topics import RUNS_DLQ
from tests.support.jobs import Cleanup, create, http_job, runs, wait_runs
from tests.support.kafka import admin_settings, find_messages, kafka_settings
from tests.support.sink import Sink
from tests.support.waiting import eventually


@pytest.fixture
async def slow_sink(make_sink: Callable[..., Awaitable[Sink]]) -> Sink:
    return await make_sink(delay_seconds=2.5)


@pytest.fixture
async def failing_sink(make_sink: Callable[..., Awaitable[Sink]]) -> Sink:
    return await make_sink(status=503)


async def test_overlap_forbid_skips_while_running(api: httpx.AsyncClient, slow_sink: Sink,
                                                  path: str, jobs: Cleanup) -> None:
    job_id = await jobs.create(api, http_job(slow_sink.url(path),
                                        {"type": "interval", "every_seconds": 1},
                                        overlap="forbid", retry={"max_attempts": 1}))
    await wait_runs(api, job_id, "succeeded", 2, timeout=20)
    skipped = [r for r in await runs(api, job_id) if r["status"] == "skipped"]
    assert skipped and all(r["reason"] == "overlap" for r in skipped)
    starts = sorted(h.received_at for h in slow_sink.hits_for(path))
    assert all(b - a >= 2.4 for a, b in pairwise(starts)), starts


async def test_overlap_replace_cancels_the_running_one(
    api: httpx.AsyncClient, path: str, make_sink: Callable[..., Awaitable[Sink]], jobs: Cleanup
) -> None:
    sink = await make_sink(delay_seconds=10)
    job_id = await jobs.create(api, http_job(sink.url(path), {"type": "interval", "every_seconds": 2},
                                        overlap="replace", retry={"max_attempts": 1}))
    replaced = await wait_runs(api, job_id, "cancelled", 2, timeout=20)
    assert all(r["error"] == "replaced by a newer run" for r in replaced)


async def test_run_now_follows_overlap_unless_overridden(
    api: httpx.AsyncClient, path: str, make_sink: Callable[..., Awaitable[Sink]], jobs: Cleanup
) -> None:
    sink = await make_sink(delay_seconds=4)
    job_id = await jobs.create(api, http_job(sink.url(path), {"type": "once", "at": "2099-01-01T00:00:00Z"},
                                        overlap="forbid", retry={"max_attempts": 1}))
    first = (await api.post(f"/jobs/{job_id}/run")).json()["run_id"]
    await sink.wait_for(path, 1, timeout=10)
    second = (await api.post(f"/jobs/{job_id}/run")).json()["run_id"]
    skipped = await wait_runs(api, job_id, "skipped", timeout=10)
    assert skipped[0]["run_id"] == second and skipped[0]["reason"] == "overlap"
    third = (await api.post(f"/jobs/{job_id}/run", json={"override_overlap": True})).json()
    hits = await sink.wait_for(path, 2, timeout=10)
    assert {h.headers["Idempotency-Key"] for h in hits} == {first, third["run_id"]}


async def test_retries_exhausted_fail_visibly_and_reach_the_dlq(
    api: httpx.AsyncClient, failing_sink: Sink, path: str, env: dict[str, str]
) -> None:
    job_id = await create(api, http_job(failing_sink.url(path), {"type": "now"},
                                        retry={"max_attempts": 3, "initial_delay_seconds": 1,
                                               "multiplier": 2, "jitter": False}))
    async def final_failure() -> list[dict[str, Any]] | None:
        found = [r for r in await runs(api, job_id) if r["status"] == "failed"
                 and r["attempt"] == 3]
        return found or None

    run = (await eventually(final_failure, timeout=20))[0]
    assert run["attempt"] == 3 and run["http_status"] == 503 and run["error"] == "HTTP 503"
    hits = failing_sink.hits_for(path)
    assert [h.headers["X-Duetime-Attempt"] for h in hits] == ["1", "2", "3"]
    assert {h.headers["Idempotency-Key"] for h in hits} == {run["run_id"]}
    letters = await find_messages(kafka_settings(env), RUNS_DLQ,
                                  lambda m: m.get("key") == job_id)
    assert "failed after 3 attempt(s)" in letters[0]["reason"]


async def test_timeout_is_timed_out(api: httpx.AsyncClient, slow_sink: Sink, path: str) -> None:
    spec = http_job(slow_sink.url(path), {"type": "now"}, retry={"max_attempts": 1})
    spec["target"]["timeout_seconds"] = 0.5
    job_id = await create(api, spec)
    run = (await wait_runs(api, job_id, "timed_out", timeout=15))[0]
    assert run["duration_ms"] < 2000


async def test_http_target_options_and_response_excerpt(api: httpx.AsyncClient, sink: Sink,
                                                        path: str) -> None:
    spec = http_job(sink.url(path), {"type": "now"}, retry={"max_attempts": 1})
    spec["target"].update(method="PUT", body="plain text", headers={"X-A": "b"},
                          success_codes=[201], store_response=True)
    job_id = await create(api, spec)
    run = (await wait_runs(api, job_id, "failed", timeout=15))[0]
    assert run["http_status"] == 200 and run["response_excerpt"] == "ok"
    hit = sink.hits_for(path)[0]
    assert hit.method == "PUT" and hit.body == b"plain text" and hit.headers["X-A"] == "b"
    assert hit.headers["Content-Type"].startswith("text/plain")


async def test_kafka_target_produces_the_message(api: httpx.AsyncClient,
                                                 env: dict[str, str]) -> None:
    # A topic of tenant dev's own (the default allowlist: "dev.*"), made by the operator.
    topic = f"dev.e2e.delayed.{uuid.uuid4().hex[:8]}"
    async with kafka.admin(admin_settings(env)) as admin:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    marker = uuid.uuid4().hex
    job_id = await create(api, {"name": "to-kafka", "schedule": {"type": "delay", "seconds": 1},
                                "target": {"type": "kafka", "topic": topic, "key": "k1",
                                           "value": {"marker": marker},
                                           "headers": {"h": "v"}}})
    found = await find_messages(admin_settings(env), topic,
                                lambda m: m.get("marker") == marker)
    assert found == [{"marker": marker}]
    await wait_runs(api, job_id, "succeeded")


async def test_higher_priority_is_dispatched_first_at_the_same_instant(
    api: httpx.AsyncClient, sink: Sink, path: str
) -> None:
    due = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0).isoformat()
    priorities = [3, 9, 0, 7, 5, 1, 8, 2]
    jobs = {p: await create(api, http_job(sink.url(path), {"type": "once", "at": due},
                                          priority=p)) for p in priorities}
    queued: dict[int, str] = {}
    for p, job_id in jobs.items():
        queued[p] = (await wait_runs(api, job_id, "succeeded", timeout=20))[0]["queued_at"]
    order = sorted(queued, key=lambda p: queued[p])
    assert order == sorted(priorities, reverse=True), queued
