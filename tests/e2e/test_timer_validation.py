"""Through the gateway: problem+json errors reach the client, keys are required, the tenant is
the gateway's word, bodies are bounded. (Every validation rule is tested in process, in
tests/unit/test_job_service_validation.py.)"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from tests.support.jobs import Cleanup, get_job, http_job
from tests.support.problems import problem
from tests.support.waiting import eventually

GOOD_URL = "http://127.0.0.1:9/hook"
# Headers a client might hope the services read as its tenant.
TENANT_LOOKALIKES = ("X-Duetime-Tenant", "X-Tenant", "X-Tenant-Id", "X-Duetime-Tenant-Id",
                     "Tenant", "X-Forwarded-User", "X-Auth-Request-User")


async def test_an_invalid_timer_is_a_422_naming_the_field(api: httpx.AsyncClient) -> None:
    body = problem(await api.post("/timers", json={"seconds": 5, "url": "/relative"}), 422)
    assert [e["field"] for e in body["errors"]] == ["url"]


async def test_a_malformed_body_is_400(api: httpx.AsyncClient) -> None:
    resp = await api.post("/timers", content=b"{", headers={"Content-Type": "application/json"})
    problem(resp, 400)


async def test_missing_or_wrong_key_is_401(anonymous: httpx.AsyncClient) -> None:
    payload = {"seconds": 5, "url": GOOD_URL}
    problem(await anonymous.post("/timers", json=payload), 401)
    resp = await anonymous.post("/timers", json=payload, headers={"X-API-Key": "nope"})
    problem(resp, 401)
    resp = await anonymous.get("/timers/x", headers={"Authorization": "Bearer nope"})
    problem(resp, 401)


async def _tenant(pg: asyncpg.Pool[Any], job_id: str) -> str:
    tenant: str = await pg.fetchval("SELECT tenant FROM jobs WHERE job_id = $1", job_id)
    return tenant


async def test_a_forged_tenant_header_is_ignored(
    api: httpx.AsyncClient, api_b: httpx.AsyncClient, anonymous: httpx.AsyncClient,
    pg: asyncpg.Pool[Any], jobs: Cleanup,
) -> None:
    tag = uuid.uuid4().hex
    labelled = http_job(GOOD_URL, {"type": "once", "at": "2099-01-01T00:00:00Z"},
                        labels={"t": tag})
    mine = await jobs.create(api, labelled)
    theirs = await jobs.create(api_b, labelled)
    a, b = await _tenant(pg, mine), await _tenant(pg, theirs)
    assert a != b
    forged = [(name, b) for name in TENANT_LOOKALIKES] + [("X-Duetime-Tenant", b)]

    # Reads with tenant-b's name in every header still see only the caller's own jobs.
    resp = await api.get("/jobs", params={"label": f"t:{tag}"}, headers=forged)
    assert [j["job_id"] for j in resp.json()["items"]] == [mine]
    for url in (f"/jobs/{theirs}", f"/jobs/{theirs}/runs", f"/jobs/{theirs}/status",
                f"/timers/{theirs}"):
        assert (await api.get(url, headers=forged)).status_code == 404, url
    # Writes too: tenant-b's job cannot be touched, and what the caller creates is its own.
    for method, url in (("DELETE", f"/jobs/{theirs}"), ("POST", f"/jobs/{theirs}/pause"),
                        ("POST", f"/jobs/{theirs}/run")):
        assert (await api.request(method, url, headers=forged)).status_code == 404, url
    resp = await api.post("/jobs", json=labelled, headers=forged)
    assert resp.status_code == 202, resp.text
    created = jobs.track(api, resp.json()["job_id"])
    await eventually(lambda: get_job(api, created), timeout=15)
    assert await _tenant(pg, created) == a
    assert (await api_b.get(f"/jobs/{created}")).status_code == 404
    assert (await get_job(api_b, theirs) or {}).get("state") == "active"  # untouched
    # And without a key, a tenant header alone is no key at all.
    resp = await anonymous.post("/timers", json={"seconds": 5, "url": GOOD_URL},
                                headers=[("X-Duetime-Tenant", a), ("X-Duetime-Tenant", b)])
    problem(resp, 401)
    problem(await anonymous.get(f"/jobs/{mine}", headers={"X-Duetime-Tenant": a}), 401)


async def test_body_too_large_is_413(api: httpx.AsyncClient) -> None:
    big = {"seconds": 5, "url": GOOD_URL + "?" + "a" * (400 * 1024)}
    problem(await api.post("/timers", json=big), 413)
    job = http_job(GOOD_URL, {"type": "now"}, payload={"blob": "a" * (400 * 1024)})
    problem(await api.post("/jobs", json=job), 413)


async def test_idempotency_key_returns_same_timer_and_conflicts_on_other_body(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    key = {"Idempotency-Key": f"timer-{uuid.uuid4()}"}
    first = await api.post("/timers", json={"seconds": 600, "url": GOOD_URL}, headers=key)
    assert first.status_code == 201, first.text
    jobs.track(api, first.json()["id"])
    again = await api.post("/timers", json={"seconds": 600, "url": GOOD_URL}, headers=key)
    assert again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = await api.post("/timers", json={"seconds": 601, "url": GOOD_URL}, headers=key)
    problem(other, 409)
