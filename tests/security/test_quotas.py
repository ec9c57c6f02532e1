"""Issue 7 hole 6: one tenant can no longer starve the others through the write API.

Each test exploits the hole the way an abusive tenant would — a flood of creates past the
active-jobs quota, a set of every-second schedules past the firing-rate quota, a 200 KiB target —
against the job service in process with tight quotas (the stack's defaults are generous, see
docs/quotas.md), on the real Kafka, Postgres and Redis; the stack's writer stores what is
accepted. Every refusal is the documented problem+json, publishes nothing, stores nothing, and
another tenant of the same service is not affected.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from duetime.settings import QuotaSettings
from tests.support.job_service import InProcess, job_service
from tests.support.problems import problem
from tests.support.waiting import eventually

ACTIVE_JOBS = 5
FIRINGS_PER_SECOND = 2.5
SINK = "http://127.0.0.1:18999/never-called"  # nothing here fires before the test ends


def one_shot(name: str = "quota") -> dict[str, Any]:
    return {"name": name, "schedule": {"type": "delay", "seconds": 86400},
            "target": {"type": "http", "url": SINK}}


def recurring(schedule: dict[str, Any], name: str = "quota-recurring") -> dict[str, Any]:
    # Starts tomorrow: the quota counts what a schedule can fire, not what it fired yet.
    start = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return {"name": name, "schedule": {**schedule, "start_at": start},
            "target": {"type": "http", "url": SINK}}


EVERY_SECOND = {"type": "interval", "every_seconds": 1}


@pytest.fixture
async def service(env: dict[str, str], redis: Redis) -> AsyncIterator[InProcess]:
    quotas = QuotaSettings(quota_active_jobs=ACTIVE_JOBS, quota_firings_per_second=FIRINGS_PER_SECOND,
                           quota_refresh_seconds=0.2)
    async with job_service(env, redis, quotas) as svc:
        yield svc
        # Cancel whatever the test created, through the same service.
        for tenant in {c["tenant"] for c in svc.producer.commands}:
            client = svc.client(tenant)
            for cmd in svc.published(tenant, "create"):
                await client.delete(f"/jobs/{cmd['job_id']}")


def tenant() -> str:
    return f"quota-{uuid.uuid4().hex[:10]}"


async def stored_ids(pg: asyncpg.Pool[Any], tenant_name: str) -> set[str]:
    rows = await pg.fetch("SELECT job_id FROM jobs WHERE tenant = $1", tenant_name)
    return {r["job_id"] for r in rows}


def quota_problem(resp: httpx.Response, quota: str) -> dict[str, Any]:
    body = problem(resp, 429)
    assert body["quota"] == quota, body
    assert int(resp.headers["Retry-After"]) >= 1
    return body


async def test_a_flood_of_creates_stops_at_the_active_jobs_quota(
    service: InProcess, pg: asyncpg.Pool[Any],
) -> None:
    a, b = tenant(), tenant()
    client_a, client_b = service.client(a), service.client(b)

    answers = await asyncio.gather(*(client_a.post("/jobs", json=one_shot()) for _ in range(20)))

    accepted = [r.json()["job_id"] for r in answers if r.status_code == 202]
    refused = [r for r in answers if r.status_code != 202]
    assert len(accepted) == ACTIVE_JOBS, [r.text for r in answers]
    for resp in refused:
        body = quota_problem(resp, "active_jobs")
        assert body["limit"] == ACTIVE_JOBS and body["usage"] >= ACTIVE_JOBS
        assert str(ACTIVE_JOBS) in body["detail"]
    # Only the accepted creates were published; the writer stores exactly those.
    assert {c["job_id"] for c in service.published(a, "create")} == set(accepted)
    await eventually(lambda: _equal(stored_ids(pg, a), set(accepted)))
    # Once stored (the usage snapshot now reads them from Postgres), still refused.
    quota_problem(await client_a.post("/jobs", json=one_shot()), "active_jobs")
    # Another tenant of the same service is not affected.
    assert (await client_b.post("/jobs", json=one_shot())).status_code == 202


async def _equal(found: Any, expected: set[str]) -> bool:
    return bool(await found == expected)


async def test_cancelling_jobs_makes_room_again(service: InProcess, pg: asyncpg.Pool[Any]) -> None:
    a = tenant()
    client = service.client(a)
    ids = [(await client.post("/jobs", json=one_shot())).json()["job_id"]
           for _ in range(ACTIVE_JOBS)]
    quota_problem(await client.post("/jobs", json=one_shot()), "active_jobs")
    await eventually(lambda: _equal(stored_ids(pg, a), set(ids)))

    assert (await client.delete(f"/jobs/{ids[0]}")).status_code == 202

    async def room() -> httpx.Response | None:  # at the next snapshot after the writer cancelled
        resp = await client.post("/jobs", json=one_shot())
        return resp if resp.status_code == 202 else None

    await eventually(room, timeout=30, interval=0.5)
    quota_problem(await client.post("/jobs", json=one_shot()), "active_jobs")


async def test_fast_recurring_schedules_stop_at_the_firing_rate_quota(
    service: InProcess, pg: asyncpg.Pool[Any],
) -> None:
    a, b = tenant(), tenant()
    client_a, client_b = service.client(a), service.client(b)
    for _ in range(2):  # 2 firings/s of 2.5
        assert (await client_a.post("/jobs", json=recurring(EVERY_SECOND))).status_code == 202

    body = quota_problem(await client_a.post("/jobs", json=recurring(EVERY_SECOND)),
                         "firings_per_second")
    assert body["limit"] == FIRINGS_PER_SECOND and body["usage"] == pytest.approx(2.0)
    # A cron expression is rated at its busiest: seconds 0 and 1 of every minute is 1/s.
    quota_problem(await client_a.post("/jobs", json=recurring(
        {"type": "cron", "expression": "0,1 * * * * *"})), "firings_per_second")
    # Every other second (0.5/s) still fits; one-shot jobs add nothing to the rate.
    every_other = {"type": "cron", "expression": "*/2 * * * * *"}
    assert (await client_a.post("/jobs", json=recurring(every_other))).status_code == 202
    assert (await client_a.post("/jobs", json=one_shot())).status_code == 202
    quota_problem(await client_a.post("/jobs", json=recurring({"type": "cron",
                                                               "expression": "0 0 * * *"})),
                  "firings_per_second")
    # The other tenant has its own quota.
    assert (await client_b.post("/jobs", json=recurring(EVERY_SECOND))).status_code == 202
    accepted = {c["job_id"] for c in service.published(a, "create")}
    assert len(accepted) == 4
    await eventually(lambda: _equal(stored_ids(pg, a), accepted))


async def test_speeding_up_a_job_by_put_or_patch_is_held_to_the_rate_quota(
    service: InProcess, pg: asyncpg.Pool[Any],
) -> None:
    a = tenant()
    client = service.client(a)
    fast = [(await client.post("/jobs", json=recurring(EVERY_SECOND))).json()["job_id"]
            for _ in range(2)]
    slow = (await client.post("/jobs", json=recurring(
        {"type": "interval", "every_seconds": 60}))).json()["job_id"]
    await eventually(lambda: _equal(stored_ids(pg, a), {*fast, slow}))

    patched = await client.patch(f"/jobs/{slow}", json={"schedule": EVERY_SECOND})
    quota_problem(patched, "firings_per_second")
    quota_problem(await client.put(f"/jobs/{slow}", json=recurring(EVERY_SECOND)),
                  "firings_per_second")
    # Making the job no faster than before is always allowed, near the limit or not.
    same = await client.patch(f"/jobs/{slow}", json={"name": "renamed"})
    assert same.status_code == 202, same.text
    assert [c["type"] for c in service.published(a) if c["job_id"] == slow] == ["create", "patch"]
    every = await pg.fetchval("SELECT spec -> 'schedule' ->> 'every_seconds' FROM jobs "
                              "WHERE job_id = $1", slow)
    assert every == "60"


async def test_resuming_a_paused_job_is_held_to_the_rate_quota(
    service: InProcess, pg: asyncpg.Pool[Any],
) -> None:
    a = tenant()
    client = service.client(a)
    first, second = [(await client.post("/jobs", json=recurring(EVERY_SECOND))).json()["job_id"]
                     for _ in range(2)]
    assert (await client.post(f"/jobs/{first}/pause")).status_code == 202
    await eventually(lambda: _state(pg, first, "paused"))

    async def room() -> str | None:  # the paused job's firings no longer count
        resp = await client.post("/jobs", json=recurring(EVERY_SECOND))
        return resp.json()["job_id"] if resp.status_code == 202 else None

    third = await eventually(room, timeout=30, interval=0.5)
    await eventually(lambda: _equal(stored_ids(pg, a), {first, second, third}))

    quota_problem(await client.post(f"/jobs/{first}/resume"), "firings_per_second")
    assert not service.published(a, "resume")
    assert await _state(pg, first, "paused")
    # Resuming a job that is not paused changes nothing and is not refused.
    assert (await client.post(f"/jobs/{second}/resume")).status_code == 202


async def _state(pg: asyncpg.Pool[Any], job_id: str, state: str) -> bool:
    return bool(await pg.fetchval("SELECT state = $2 FROM jobs WHERE job_id = $1", job_id, state))


async def test_a_burst_of_creates_stops_at_the_creates_per_second_quota(
    env: dict[str, str], redis: Redis,
) -> None:
    # One create per 100 s, a burst of one: of 20 at once exactly one gets through.
    quotas = QuotaSettings(quota_creates_per_second=0.01)
    async with job_service(env, redis, quotas) as service:
        a, b = tenant(), tenant()
        answers = await asyncio.gather(*(service.client(a).post("/jobs", json=one_shot())
                                         for _ in range(20)))
        assert sorted(r.status_code for r in answers) == [202] + [429] * 19
        for resp in answers[1:]:
            if resp.status_code == 429:
                assert quota_problem(resp, "creates_per_second")["limit"] == 0.01
        assert len(service.published(a)) == 1
        assert (await service.client(b).post("/jobs", json=one_shot())).status_code == 202
        for cmd in service.published(a) + service.published(b):
            await service.client(cmd["tenant"]).delete(f"/jobs/{cmd['job_id']}")


async def test_a_200_kib_target_is_refused_and_never_published(service: InProcess) -> None:
    a, b = tenant(), tenant()
    big = one_shot()
    big["target"]["body"] = {"blob": "x" * (200 * 1024)}

    body = problem(await service.client(a).post("/jobs", json=big), 422)

    assert [e["field"] for e in body["errors"]] == ["target"]
    assert str(64 * 1024) in body["errors"][0]["message"]
    assert service.published(a) == []
    # The same bytes in headers count too; a small target of the other tenant is fine.
    headers = {f"X-Pad-{i}": "y" * 8000 for i in range(10)}
    padded = {**one_shot(), "target": {"type": "http", "url": SINK, "headers": headers}}
    problem(await service.client(a).post("/jobs", json=padded), 422)
    assert (await service.client(b).post("/jobs", json=one_shot())).status_code == 202
