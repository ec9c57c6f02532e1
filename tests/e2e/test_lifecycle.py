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

from tests.support.jobs import create, get_job, http_job, runs, wait_runs, wait_state
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
    await asyncio.sleep(1)
    assert sink.hits_for(old) == []
    job = await wait_state(api, job_id, "completed")
    assert job["version"] == 2 and job["target"]["url"] == sink.url(new)


async def test_edit_just_before_due_still_wins(api: httpx.AsyncClient, sink: Sink,
                                               path: str) -> None:
    old, new = path + "/old", path + "/new"
    due = time.time() + 3
    job_id = await create(api, http_job(sink.url(old), {
        "type": "once", "at": datetime.fromtimestamp(due, UTC).isoformat()}))
    await asyncio.sleep(max(0.0, due - time.time() - 0.35))  # inside the dispatch lookahead
    resp = await api.patch(f"/jobs/{job_id}", json={"target": {"url": sink.url(new)}})
    assert resp.status_code == 202
    await wait_state(api, job_id, "completed", timeout=15)
    assert sink.hits_for(old) == []
    assert len(sink.hits_for(new)) == 1


async def test_patch_is_a_json_merge_patch_and_validated(api: httpx.AsyncClient) -> None:
    job_id = await create(api, http_job("http://127.0.0.1:9/x", {"type": "once", "at": at(3600)},
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
    await api.delete(f"/jobs/{job_id}")


async def test_cancel_before_due_means_no_firing(api: httpx.AsyncClient, sink: Sink,
                                                 path: str) -> None:
    job_id = await create(api, http_job(sink.url(path), {"type": "interval", "every_seconds": 1}))
    await sink.wait_for(path, 1, timeout=10)
    assert (await api.delete(f"/jobs/{job_id}")).status_code == 202
    await wait_state(api, job_id, "cancelled")
    count = len(sink.hits_for(path))
    await asyncio.sleep(2.5)
    assert len(sink.hits_for(path)) == count
    assert (await api.post(f"/jobs/{job_id}/resume")).status_code == 202  # accepted, no effect
    await asyncio.sleep(1.5)
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
    api: httpx.AsyncClient, sink: Sink, path: str
) -> None:
    job_id = await create(api, http_job(sink.url(path), {"type": "interval", "every_seconds": 1}))
    await sink.wait_for(path, 1, timeout=10)
    assert (await api.post(f"/jobs/{job_id}/pause")).status_code == 202
    await wait_state(api, job_id, "paused")
    await asyncio.sleep(0.3)
    count = len(sink.hits_for(path))
    await asyncio.sleep(3)
    assert len(sink.hits_for(path)) == count
    skipped = [r for r in await runs(api, job_id) if r["status"] == "skipped"]
    assert skipped and all(r["reason"] == "paused" for r in skipped)
    assert (await api.post(f"/jobs/{job_id}/resume")).status_code == 202
    await sink.wait_for(path, count + 2, timeout=10)
    await api.delete(f"/jobs/{job_id}")


async def test_run_now_fires_with_the_returned_run_id(api: httpx.AsyncClient, sink: Sink,
                                                      path: str) -> None:
    job_id = await create(api, http_job(sink.url(path), {"type": "once", "at": at(3600)}))
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
    for raw in (b"{", b'{"override_overlap": "yes"}', b'{"other": 1}'):
        bad = await api.post(f"/jobs/{job_id}/run", content=raw,
                             headers={"Content-Type": "application/json"})
        assert bad.status_code in (400, 422), raw
    await api.delete(f"/jobs/{job_id}")


async def test_idempotency_key_on_jobs(api: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": f"job-{uuid.uuid4()}"}
    body = http_job("http://127.0.0.1:9/x", {"type": "once", "at": "2099-01-01T00:00:00Z"})
    first = await api.post("/jobs", json=body, headers=key)
    again = await api.post("/jobs", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    other = await api.post("/jobs", json={**body, "name": "different"}, headers=key)
    assert other.status_code == 409
    job_id = first.json()["job_id"]
    await eventually(lambda: get_job(api, job_id))
    await asyncio.sleep(0.5)
    assert len(await runs(api, job_id)) == 0
    await api.delete(f"/jobs/{job_id}")


async def test_writes_reject_malformed_and_hostile_input(api: httpx.AsyncClient) -> None:
    job_id = await create(api, http_job("http://127.0.0.1:9/x", {"type": "once", "at": at(3600)}))
    good = http_job("http://127.0.0.1:9/x", {"type": "once", "at": at(3600)})
    broken = {"content": b"[1, 2", "headers": {"Content-Type": "application/json"}}
    never = {"schedule": {"type": "cron", "expression": "0 0 30 2 *"}}
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("put", f"/jobs/{job_id}", {"json": {**good, "schedule": {"type": "once"}}}, 422),
        ("put", f"/jobs/{job_id}", {"json": {**good, "evil": "'; DROP TABLE jobs; --"}}, 422),
        ("put", f"/jobs/{job_id}", broken, 400),
        ("patch", f"/jobs/{job_id}", {"json": never}, 422),
        ("patch", f"/jobs/{job_id}", {"json": ["not", "an", "object"]}, 422),
        ("post", "/jobs:preview?count=0", {"json": good}, 422),
        ("post", "/jobs:preview?count=abc", {"json": good}, 422),
        ("post", "/jobs:preview", broken, 400),
        ("post", "/jobs", {"json": {**good, "name": "x" * 201}}, 422),
        ("post", "/jobs", {"json": good, "headers": {"Idempotency-Key": "k" * 256}}, 422),
        ("put", "/jobs/%27%20OR%201%3D1", {"json": good}, 404),
    ]
    for method, url, kwargs, status in cases:
        resp = await api.request(method.upper(), url, **kwargs)
        assert resp.status_code == status, (method, url, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    job = await get_job(api, job_id)
    assert job is not None and job["version"] == 1  # nothing was applied
    await api.delete(f"/jobs/{job_id}")
