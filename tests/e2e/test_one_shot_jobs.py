"""One-shot jobs (`once`, `delay`, `now`) with an HTTP target, through the gateway."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.support.sink import Sink, free_port
from tests.support.waiting import eventually


def job(url: str, schedule: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "e2e", "schedule": schedule,
            "target": {"type": "http", "url": url, "method": "POST",
                       "headers": {"X-Test": "yes"}, "body": {"hello": "world"}}, **extra}


async def _job(api: httpx.AsyncClient, job_id: str) -> dict[str, Any] | None:
    resp = await api.get(f"/jobs/{job_id}")
    return resp.json() if resp.status_code == 200 else None


async def test_delay_job_fires_within_a_second_of_due(
    api: httpx.AsyncClient, sink: Sink, path: str
) -> None:
    before = time.time()
    resp = await api.post("/jobs", json=job(sink.url(path), {"type": "delay", "seconds": 1}))
    assert resp.status_code == 202, resp.text
    after = time.time()
    body = resp.json()
    assert resp.headers["location"] == f"/jobs/{body['job_id']}"
    due = datetime.fromisoformat(body["next_run_at"]).timestamp()
    assert before + 1 - 0.01 <= due <= after + 1 + 0.01

    hits = await sink.wait_for(path, 1, timeout=10)
    assert len(hits) == 1
    late = hits[0].received_at - due
    assert 0 <= late < 1.0, f"fired {late:.3f}s after due"
    assert hits[0].headers["X-Test"] == "yes"
    assert hits[0].body == b'{"hello":"world"}'


async def test_now_job_fires_and_completes(api: httpx.AsyncClient, sink: Sink, path: str) -> None:
    resp = await api.post("/jobs", json=job(sink.url(path), {"type": "now"}))
    job_id = resp.json()["job_id"]
    assert len(await sink.wait_for(path, 1, timeout=10)) == 1

    async def completed() -> dict[str, Any] | None:
        j = await _job(api, job_id)
        return j if j and j["state"] == "completed" else None

    final = await eventually(completed, timeout=15)
    assert final["run_count"] == 1
    assert final["last_run"]["status"] == "succeeded"
    assert final["next_run_at"] is None
    status = (await api.get(f"/jobs/{job_id}/status")).json()
    assert status["state"] == "completed"
    assert status["latest_run"]["status"] == "succeeded"


async def test_once_in_the_past_fires_immediately(
    api: httpx.AsyncClient, sink: Sink, path: str
) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    resp = await api.post("/jobs", json=job(sink.url(path), {"type": "once",
                                                              "at": at.isoformat()}))
    accepted = time.time()
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    hits = await sink.wait_for(path, 1, timeout=10)
    assert hits[0].received_at - accepted < 1.0, "a past `at` waited instead of firing at once"
    # It is the firing scheduled at `at` (not a catch-up skip, not a re-anchored one), once.
    assert datetime.fromisoformat(hits[0].headers["X-Duetime-Scheduled-At"]) == at

    async def completed() -> dict[str, Any] | None:
        j = await _job(api, job_id)
        return j if j and j["state"] == "completed" else None

    final = await eventually(completed, timeout=15)
    assert final["run_count"] == 1 and final["last_run"]["status"] == "succeeded"
    assert len(sink.hits_for(path)) == 1


async def test_failing_target_is_retried_then_failed(
    api: httpx.AsyncClient, sink: Sink,
) -> None:
    # A port the stack's egress allowlist admits but nothing listens on: refused, and retried.
    spec = job(f"http://127.0.0.1:{free_port()}/nothing-listens", {"type": "now"},
               retry={"max_attempts": 2, "initial_delay_seconds": 1, "jitter": False})
    job_id = (await api.post("/jobs", json=spec)).json()["job_id"]

    async def failed() -> list[dict[str, Any]]:
        resp = await api.get(f"/jobs/{job_id}/runs")
        items = resp.json()["items"] if resp.status_code == 200 else []
        return [r for r in items if r["status"] == "failed" and r["attempt"] == 2]

    runs = await eventually(failed, timeout=20)
    assert runs[0]["error"]
    j = await _job(api, job_id)
    assert j is not None and j["state"] == "completed" and j["failure_count"] == 1


async def test_an_invalid_job_is_a_422_naming_the_field(api: httpx.AsyncClient) -> None:
    # One case through the gateway; every rule is tested in process (test_job_service_validation).
    body = job("http://127.0.0.1:9/x", {"type": "cron", "expression": "0 0 30 2 *"})
    resp = await api.post("/jobs", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in resp.json()["errors"]] == ["schedule.expression"]


async def test_unknown_job_is_404_for_reads_and_writes(api: httpx.AsyncClient) -> None:
    for resp in (await api.get("/jobs/nope"), await api.get("/jobs/nope/runs"),
                 await api.get("/jobs/nope/status"), await api.delete("/jobs/nope"),
                 await api.post("/jobs/nope/pause"), await api.post("/jobs/nope/run")):
        assert resp.status_code == 404, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")


async def test_runs_pagination_rejects_bad_input(api: httpx.AsyncClient, sink: Sink,
                                                 path: str) -> None:
    job_id = (await api.post("/jobs", json=job(sink.url(path), {"type": "now"}))).json()["job_id"]
    await eventually(lambda: _job(api, job_id))
    for query in ("limit=0", "limit=501", "limit=abc", "cursor=%%%", "status=bogus"):
        resp = await api.get(f"/jobs/{job_id}/runs?{query}")
        assert resp.status_code == 422, (query, resp.text)
