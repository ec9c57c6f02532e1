"""Read-your-writes: a command sent right after the create's 202 is accepted and applied in order
(ADR 0009) — before the writer has persisted the job, where a Postgres lookup would say 404."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.support.jobs import http_job, wait_runs, wait_state
from tests.support.sink import Sink

JOBS = 8


async def _create(api: httpx.AsyncClient, spec: dict[str, object]) -> str:
    resp = await api.post("/jobs", json=spec)
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["job_id"]
    return job_id


async def test_cancel_right_after_create_is_accepted_and_wins(
    api: httpx.AsyncClient, sink: Sink, path: str,
) -> None:
    ids = []
    for _ in range(JOBS):
        job_id = await _create(api, http_job(sink.url(path), {"type": "delay", "seconds": 1.5}))
        resp = await api.delete(f"/jobs/{job_id}")
        assert resp.status_code == 202, resp.text
        ids.append(job_id)
    for job_id in ids:
        await wait_state(api, job_id, "cancelled")
    await asyncio.sleep(2.5)  # past every due instant: a firing would have reached the sink
    assert sink.hits_for(path) == []


async def test_every_command_right_after_create_is_accepted_in_order(
    api: httpx.AsyncClient, sink: Sink, path: str,
) -> None:
    job_id = await _create(api, http_job(sink.url(path), {"type": "interval", "every_seconds": 3600}))
    moved = f"{path}/patched"
    for method, url, body in [
        ("POST", f"/jobs/{job_id}/pause", None),
        ("PATCH", f"/jobs/{job_id}", {"target": {"type": "http", "url": sink.url(moved)}}),
        ("POST", f"/jobs/{job_id}/resume", None),
        ("POST", f"/jobs/{job_id}/run", None),
    ]:
        resp = await api.request(method, url, json=body)
        assert resp.status_code == 202, (method, url, resp.text)
    # Applied in the order accepted: the run-now fires at the patched URL, and the job is active.
    await sink.wait_for(moved, 1, timeout=15)
    job = await wait_state(api, job_id, "active")
    assert job["target"]["url"] == sink.url(moved)
    runs = await wait_runs(api, job_id, "succeeded")
    assert len(runs) == 1
    # The first firing of the hourly schedule is an hour away; only the run-now fired.
    assert sink.hits_for(path) == []


async def test_read_right_after_create_is_never_404(api: httpx.AsyncClient, sink: Sink,
                                                    path: str) -> None:
    for _ in range(JOBS):
        job_id = await _create(api, http_job(sink.url(path), {"type": "delay", "seconds": 3600}))
        resp = await api.get(f"/jobs/{job_id}")
        assert resp.status_code == 200, resp.text
        assert resp.json()["job_id"] == job_id
        assert resp.json()["state"] in ("pending", "active")
        status = await api.get(f"/jobs/{job_id}/status")
        assert status.status_code == 200, status.text
        listing = await api.get(f"/jobs/{job_id}/runs")
        assert listing.status_code == 200 and listing.json()["items"] == []
        assert (await api.delete(f"/jobs/{job_id}")).status_code == 202


async def test_ids_nobody_issued_and_other_tenants_ids_are_404(
    api: httpx.AsyncClient, api_b: httpx.AsyncClient, sink: Sink, path: str,
) -> None:
    job_id = await _create(api, http_job(sink.url(path), {"type": "delay", "seconds": 3600}))
    # A forged id of the same shape: the MAC does not match, and Postgres has no such job.
    forged = uuid.uuid4().hex
    for client, ident in [(api, forged), (api_b, job_id), (api_b, forged)]:
        for method, url in [("DELETE", f"/jobs/{ident}"), ("POST", f"/jobs/{ident}/pause"),
                            ("POST", f"/jobs/{ident}/run"), ("GET", f"/jobs/{ident}")]:
            resp = await client.request(method, url)
            assert resp.status_code == 404, (method, url, resp.text)
        resp = await client.patch(f"/jobs/{ident}", json={"name": "x"})
        assert resp.status_code == 404, resp.text
    await wait_state(api, job_id, "active")
    assert (await api.delete(f"/jobs/{job_id}")).status_code == 202
