"""Edit, patch, cancel, pause, resume and run-now through the gateway."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from schemas.topics import JOB_EVENTS
from tests.support.jobs import Cleanup, create, get_job, http_job, runs, wait_runs, wait_state
from tests.support.kafka import find_messages, kafka_settings
from tests.support.sink import Sink
from tests.support.waiting import eventually


@pytest.fixture
async def slow_sink(make_sink: Callable[..., Awaitable[Sink]]) -> Sink:
    return await make_sink(delay_seconds=6)


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_edit_before_due_wins(api: httpx.AsyncClient, sink: Sink, path: str) -> None:
    old, new = path + "/old", path + "/new"
    job_id = await create(api, http_job(sink.url(old), {"type": "once", "at": at(3)}))
    resp = await api.put(f"/jobs/{job_id}",
                         json=http_job(sink.url(new), {"type": "once", "at": at(3.5)}))
    assert resp.status_code == 202, resp.text
    assert len(await sink.wait_for(new, 1, timeout=15)) == 1
    # Completed means the one firing there will ever be has been recorded; the old URL was
    # due half a second before it.
    job = await wait_state(api, job_id, "completed")
    assert sink.hits_for(old) == []
    assert job["version"] == 2 and job["target"]["url"] == sink.url(new)


async def test_patch_is_a_json_merge_patch_and_validated(api: httpx.AsyncClient,
                                                        jobs: Cleanup) -> None:
    job_id = await jobs.create(api, http_job("http://127.0.0.1:9/x", {"type": "once", "at": at(3600)},
                                        labels={"team": "a", "tier": "1"}))
    resp = await api.patch(f"/jobs/{job_id}", json={"name": "renamed",
                                                    "labels": {"tier": None, "env": "prod"}})
    assert resp.status_code == 202

    async def renamed() -> dict[str, object] | None:
        job = await get_job(api, job_id)
        return job if job and job["name"] == "renamed" else None

    job = await eventually(renamed)
    assert job["labels"] == {"team": "a", "env": "prod"} and job["version"] == 2
    bad = await api.patch(f"/jobs/{job_id}", json={"priority": 42})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "priority"
    bad = await api.patch(f"/jobs/{job_id}", content=b"{oops",
                          headers={"Content-Type": "application/json"})
    assert bad.status_code == 400


async def test_cancel_before_due_means_no_firing(api: httpx.AsyncClient, sink: Sink,
                                                 path: str, env: dict[str, str]) -> None:
    job_id = await create(api, http_job(sink.url(path), {"type": "interval", "every_seconds": 1}))
    await sink.wait_for(path, 1, timeout=10)
    assert (await api.delete(f"/jobs/{job_id}")).status_code == 202
    await wait_state(api, job_id, "cancelled")
    count = len(sink.hits_for(path))
    await asyncio.sleep(2.5)  # the point: nothing fires in the next seconds
    assert len(sink.hits_for(path)) == count
    assert (await api.post(f"/jobs/{job_id}/resume")).status_code == 202  # accepted, no effect
    outcome = await find_messages(kafka_settings(env), JOB_EVENTS,
                                  lambda m: m.get("job_id") == job_id
                                  and m.get("command_type") == "resume")
    assert outcome and outcome[0]["type"] == "job.rejected", outcome
    assert (await get_job(api, job_id) or {})["state"] == "cancelled"


async def test_cancel_aborts_a_running_call(api: httpx.AsyncClient, slow_sink: Sink,
                                            path: str) -> None:
    job_id = await create(api, http_job(slow_sink.url(path), {"type": "now"},
                                        retry={"max_attempts": 1}))
    await slow_sink.wait_for(path, 1, timeout=10)
    cancelled_at = time.time()
    assert (await api.delete(f"/jobs/{job_id}")).status_code == 202
    run = (await wait_runs(api, job_id, "cancelled", timeout=10))[0]
    finished = datetime.fromisoformat(run["finished_at"]).timestamp()
    assert finished - cancelled_at < 3, "the call was not aborted"
    assert run["error"] == "job cancelled"
    assert (await get_job(api, job_id) or {})["state"] == "cancelled"


async def test_pause_skips_firings_visibly_and_resume_continues(
    api: httpx.AsyncClient, sink: Sink, path: str, jobs: Cleanup
) -> None:
    job_id = await jobs.create(api, http_job(sink.url(path), {"type": "interval", "every_seconds": 1}))
    await sink.wait_for(path, 1, timeout=10)
    assert (await api.post(f"/jobs/{job_id}/pause")).status_code == 202
    await wait_state(api, job_id, "paused")
    # The first skipped firing shows the pause reached the dispatcher; a firing sent before it
    # has arrived by then (it was due a second earlier).
    await wait_runs(api, job_id, "skipped", timeout=10)
    count = len(sink.hits_for(path))
    await asyncio.sleep(3)  # the point: nothing fires while paused
    assert len(sink.hits_for(path)) == count
    skipped = [r for r in await runs(api, job_id) if r["status"] == "skipped"]
    assert len(skipped) >= 3 and all(r["reason"] == "paused" for r in skipped)
    assert (await api.post(f"/jobs/{job_id}/resume")).status_code == 202
    await sink.wait_for(path, count + 2, timeout=10)


async def test_run_now_fires_with_the_returned_run_id(api: httpx.AsyncClient, sink: Sink,
                                                      path: str, jobs: Cleanup) -> None:
    job_id = await jobs.create(api, http_job(sink.url(path), {"type": "once", "at": at(3600)}))
    await api.post(f"/jobs/{job_id}/pause")
    await wait_state(api, job_id, "paused")
    resp = await api.post(f"/jobs/{job_id}/runNow")
    assert resp.status_code == 202
    run_id = resp.json()["run_id"]
    hits = await sink.wait_for(path, 1, timeout=10)
    assert hits[0].headers["Idempotency-Key"] == run_id
    await wait_runs(api, job_id, "succeeded")
    job = await get_job(api, job_id)
    assert job is not None and job["state"] == "paused"  # the scheduled firing is still ahead
    bad = await api.post(f"/jobs/{job_id}/run", json={"other": 1})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "other"


async def test_idempotency_key_on_jobs(api: httpx.AsyncClient, api_b: httpx.AsyncClient,
                                       sink: Sink, path: str, jobs: Cleanup) -> None:
    key = {"Idempotency-Key": f"job-{uuid.uuid4()}"}
    body = http_job(sink.url(path), {"type": "delay", "seconds": 1})
    answers = await asyncio.gather(*(api.post("/jobs", json=body, headers=key) for _ in range(3)))
    assert [r.status_code for r in answers] == [202] * 3, [r.text for r in answers]
    job_id = jobs.track(api, answers[0].json()["job_id"])
    assert {r.json()["job_id"] for r in answers} == {job_id}
    retried = await api.post("/jobs", json=body, headers=key)
    assert retried.status_code == 202 and retried.json()["job_id"] == job_id
    for other in ({**body, "name": "different"},
                  {**body, "schedule": {"type": "delay", "seconds": 2}}):
        resp = await api.post("/jobs", json=other, headers=key)
        assert resp.status_code == 409, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
    # A key belongs to its tenant: tenant-b's key of the same name is tenant-b's own job.
    theirs = http_job(sink.url(path + "/b"), {"type": "once", "at": "2099-01-01T00:00:00Z"})
    resp = await api_b.post("/jobs", json=theirs, headers=key)
    assert resp.status_code == 202, resp.text
    assert jobs.track(api_b, resp.json()["job_id"]) != job_id

    # Four accepted requests, one job: it fires once and is never re-created or edited.
    await sink.wait_for(path, 1, timeout=15)
    job = await wait_state(api, job_id, "completed")
    assert job["version"] == 1 and job["name"] == "e2e" and job["run_count"] == 1
    await sink.wait_for(path, 2, timeout=2)  # the point: no second firing follows
    assert len(sink.hits_for(path)) == 1


async def test_writes_through_the_gateway_reject_bad_input(api: httpx.AsyncClient,
                                                           jobs: Cleanup) -> None:
    # One case per write endpoint through the gateway; every rule is tested in process
    # (tests/unit/test_job_service_validation.py).
    good = http_job("http://127.0.0.1:9/x", {"type": "once", "at": at(3600)})
    job_id = await jobs.create(api, good)
    never = {"type": "cron", "expression": "0 0 30 2 *"}
    cases: list[tuple[str, str, dict[str, Any], int, str | None]] = [
        ("put", f"/jobs/{job_id}", {"json": {**good, "schedule": {"type": "once"}}}, 422,
         "schedule.at"),
        ("patch", f"/jobs/{job_id}", {"json": {"schedule": {**never, "at": None}}}, 422,
         "schedule.expression"),
        ("post", "/jobs:preview?count=0", {"json": good}, 422, "count"),
        ("put", "/jobs/%27%20OR%201%3D1", {"json": good}, 404, None),
    ]
    for method, url, kwargs, status, field in cases:
        resp = await api.request(method.upper(), url, **kwargs)
        assert resp.status_code == status, (method, url, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        if field is not None:
            assert [e["field"] for e in resp.json()["errors"]] == [field], resp.text
    job = await get_job(api, job_id)
    assert job is not None and job["version"] == 1  # nothing was applied
