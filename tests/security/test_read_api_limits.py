"""Issue 7 hole 6, the read side: no request can hold the API hostage.

- A read query that runs too long is stopped by Postgres (`statement_timeout`) and answered
  422 "Query too expensive", instead of hanging: forced deterministically by holding a lock the
  query must wait for, in a database of the test's own, under the search service in process.
- `POST /jobs:preview?count=1000` computes in a thread: another tenant's request is answered while
  the preview is still computing (the computation is held at a gate until it is).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from duetime import schedule
from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.tenant_assertion import TenantAssertions
from search_service.api import build_app
from search_service.service import QUERIES, Settings, read_pool
from tests.integration.conftest import fresh_db
from tests.support.gateway import AsTenant
from tests.support.job_service import job_service
from tests.support.problems import problem

__all__ = ["fresh_db"]
TIMEOUT_MS = 300
# Without the limit the request would hang for as long as the lock is held: fail, don't hang.
HANG_BOUND_S = 15


@pytest.fixture
async def search(env: dict[str, str], fresh_db: asyncpg.Pool[Any]) -> AsyncIterator[httpx.AsyncClient]:
    """The search service in process over the test's own database, as service.py opens it."""
    name = await fresh_db.fetchval("SELECT current_database()")
    dsn = f"{env['DUETIME_POSTGRES_DSN'].rsplit('/', 1)[0]}/{name}"
    settings = Settings(postgres_dsn=dsn, postgres_pool_max=2, read_statement_timeout_ms=TIMEOUT_MS)
    async with read_pool(settings) as pool:
        assertions = TenantAssertions("read-limits-gateway-secret-0123456789abcdef")
        app = build_app(Lifecycle("search_service"), pool, QUERIES, JobIds("read-limits-secret"),
                        assertions, TIMEOUT_MS)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ss",
                                     auth=AsTenant(assertions, "reader")) as client:
            yield client


async def test_a_query_that_runs_too_long_is_stopped_and_answered_422(
    search: httpx.AsyncClient, fresh_db: asyncpg.Pool[Any],
) -> None:
    async with fresh_db.acquire() as blocker, blocker.transaction():
        # Every listing must wait for this lock: the query cannot finish while it is held.
        await blocker.execute("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        resp = await asyncio.wait_for(search.get("/jobs", params={"q": "zq"}), HANG_BOUND_S)

        body = problem(resp, 422)
        assert body["title"] == "Query too expensive"
        assert f"{TIMEOUT_MS} ms" in body["detail"] and "narrow the filter" in body["detail"]
        assert [e["field"] for e in body["errors"]] == ["query"]
        stats = await asyncio.wait_for(search.get("/stats"), HANG_BOUND_S)
        problem(stats, 422)
    # The lock is gone: the same request is answered, the pool's connections still work.
    assert (await search.get("/jobs", params={"q": "zq"})).json() == {"items": [],
                                                                      "next_cursor": None}


async def test_a_maximal_preview_leaves_the_event_loop_free(
    env: dict[str, str], redis: Redis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, release = threading.Event(), threading.Event()
    answered_meanwhile: list[bool] = []
    real_preview = schedule.preview

    def gated(*args: Any) -> Any:
        # Holds the computation until the test has had another request answered. On the event
        # loop this would block that request too, and the wait would run out instead.
        entered.set()
        answered_meanwhile.append(release.wait(timeout=HANG_BOUND_S))
        return real_preview(*args)

    monkeypatch.setattr(schedule, "preview", gated)
    spec = {"name": "preview", "schedule": {"type": "cron", "expression": "* * * * * *"},
            "target": {"type": "http", "url": "http://127.0.0.1:18999/x"}}
    async with job_service(env, redis) as service:
        a, b = (service.client(f"prev-{uuid.uuid4().hex[:8]}") for _ in range(2))
        preview = asyncio.create_task(a.post("/jobs:preview", params={"count": 1000}, json=spec))
        assert await asyncio.to_thread(entered.wait, HANG_BOUND_S)

        other = await b.post("/jobs", json={**spec, "schedule": {"type": "delay",
                                                                 "seconds": 86400}})

        release.set()
        resp = await preview
        assert other.status_code == 202, other.text  # answered while the preview computed
        assert (await b.delete(f"/jobs/{other.json()['job_id']}")).status_code == 202
    assert answered_meanwhile == [True]
    assert resp.status_code == 200 and len(resp.json()["next_run_times"]) == 1000
