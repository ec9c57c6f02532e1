"""Fixtures for the security tests: the services' own ports, the gateway's signer, a victim."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from duetime.tenant_assertion import TenantAssertions
from tests.support.jobs import Cleanup, http_job
from tests.support.sink import Sink
from tests.support.waiting import eventually

# The tenants of the stack's two test keys (DUETIME_API_KEY, DUETIME_API_KEY_B).
ATTACKER, VICTIM = "dev", "tenant-b"
FAR_FUTURE = {"type": "once", "at": "2099-01-01T00:00:00Z"}


@pytest.fixture(scope="session")
def gateway_signer(env: dict[str, str]) -> TenantAssertions:
    """Signs exactly as the stack's gateway does (same secret): what a thief of it could do."""
    return TenantAssertions(env["DUETIME_GATEWAY_SECRET"])


@pytest.fixture
async def job_service(env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The job service's own port, past the gateway (what a webhook aimed at it would reach)."""
    async with httpx.AsyncClient(base_url=env["DUETIME_JOB_SERVICE_URL"], timeout=30) as client:
        yield client


@pytest.fixture
async def search_service(env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=env["DUETIME_SEARCH_SERVICE_URL"], timeout=30) as client:
        yield client


@dataclass
class VictimJobs:
    waiting: str  # an active job due far in the future: pausing or editing it would show
    fired: str  # a job that ran once, so the victim has runs

    @property
    def ids(self) -> tuple[str, str]:
        return self.waiting, self.fired


async def snapshot(pg: asyncpg.Pool[Any], job_ids: tuple[str, ...]) -> list[dict[str, Any]]:
    """What an attack could change about jobs: state, version, spec (but its name, which the
    victim's marker edit changes), and their runs."""
    rows = await pg.fetch("SELECT job_id, tenant, state, version, (spec - 'name')::text AS spec "
                          "FROM jobs "
                          "WHERE job_id = ANY($1::text[]) ORDER BY job_id", list(job_ids))
    runs = await pg.fetch("SELECT job_id, run_id, status, attempt FROM job_runs "
                          "WHERE job_id = ANY($1::text[]) ORDER BY run_id, attempt", list(job_ids))
    return [dict(r) for r in rows] + [dict(r) for r in runs]


@pytest.fixture
async def victim(api_b: httpx.AsyncClient, jobs: Cleanup, sink: Sink,
                 pg: asyncpg.Pool[Any]) -> VictimJobs:
    waiting = await jobs.create(api_b, http_job(sink.url("/victim"), FAR_FUTURE))
    fired = await jobs.create(api_b, http_job(sink.url("/victim"), {"type": "now"}))

    async def ran() -> bool:
        return bool(await pg.fetchval("SELECT count(*) FROM job_runs WHERE job_id = $1 AND "
                                      "status = 'succeeded'", fired))

    await eventually(ran, timeout=30)
    return VictimJobs(waiting, fired)
