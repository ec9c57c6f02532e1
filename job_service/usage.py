"""A tenant's usage (jobs, summed peak firing rate) without a query per request (ADR 0020).

Usage is a snapshot read from Postgres at most once per refresh interval per tenant — the first
time inline, afterwards in the background while the old one keeps answering — plus what this
replica accepted since, counted in memory in one-second buckets. What this replica accepted
in the last `WRITER_LAG_SECONDS` before a snapshot started is counted on top of it too, because
the writer may not have stored it yet: near the limit that errs towards refusing.

Staleness (docs/quotas.md): jobs that end or are cancelled free their room at the next
snapshot; creates accepted by *other* replicas show once the writer stored them and a snapshot
read them, so N replicas can overshoot by what the others accept in one refresh interval plus the
writer's lag. If Postgres does not answer, the last snapshot (or none, for a tenant not seen
before) stands and only this replica's own counts grow: quotas fail open while the job store is
down rather than refusing every create (the create itself only needs Kafka).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from duetime.firing_rate import cron_rate
from duetime.sql import load_queries

log = logging.getLogger(__name__)
QUERIES = load_queries("job_service", "quotas.sql")
# How long the writer may take to store what was accepted (it is ~20 ms when healthy).
WRITER_LAG_SECONDS = 5.0
# The first snapshot of a tenant is awaited this long; after it the create goes on without it.
FIRST_READ_SECONDS = 1.0


@dataclass(frozen=True)
class Usage:
    jobs: int = 0
    rate: float = 0.0  # firings per second, summed peak rates (duetime.firing_rate)

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.jobs + other.jobs, self.rate + other.rate)


UsageReader = Callable[[str], Awaitable[Usage]]


@dataclass
class _Tenant:
    snapshot: Usage = field(default_factory=Usage)
    started: float = float("-inf")  # monotonic time the snapshot's read began
    refresh: asyncio.Task[None] | None = None
    # [monotonic second, jobs, rate] of what this replica accepted, oldest first.
    local: deque[list[Any]] = field(default_factory=deque)

    def accepted_since(self, since: float) -> Usage:
        jobs, rate = 0, 0.0
        for bucket in self.local:
            if bucket[0] >= since:
                jobs += bucket[1]
                rate += bucket[2]
        return Usage(jobs, rate)


class UsageCache:
    def __init__(self, read: UsageReader | None, refresh_seconds: float) -> None:
        self.read, self.refresh_seconds = read, refresh_seconds
        self.tenants: dict[str, _Tenant] = {}

    async def usage(self, tenant: str) -> Usage:
        state = self.tenants.setdefault(tenant, _Tenant())
        now = time.monotonic()
        if self.read is not None and state.refresh is None \
                and now - state.started >= self.refresh_seconds:
            state.refresh = asyncio.create_task(self._refresh(tenant, state))
            if state.started == float("-inf"):  # nothing to answer with yet: wait for it
                await asyncio.wait([state.refresh], timeout=FIRST_READ_SECONDS)
        return state.snapshot + state.accepted_since(state.started - WRITER_LAG_SECONDS)

    def record(self, tenant: str, jobs: int, rate: float) -> None:
        """Count what this replica accepted (negative to give back a reservation)."""
        local = self.tenants.setdefault(tenant, _Tenant()).local
        second = float(int(time.monotonic()))
        if local and local[-1][0] == second:
            local[-1][1] += jobs
            local[-1][2] += rate
        else:
            local.append([second, jobs, rate])

    async def _refresh(self, tenant: str, state: _Tenant) -> None:
        started = time.monotonic()
        assert self.read is not None
        try:
            state.snapshot = await self.read(tenant)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("quota usage not read; the last snapshot stands",
                        extra={"tenant": tenant, "error": repr(exc)})
        finally:
            state.started, state.refresh = started, None
        while state.local and state.local[0][0] < started - WRITER_LAG_SECONDS - 1:
            state.local.popleft()

    async def aclose(self) -> None:
        tasks = [t.refresh for t in self.tenants.values() if t.refresh is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _schedule_rate(row: asyncpg.Record) -> float:
    if row["schedule_type"] == "interval":
        return 1 / float(row["every_seconds"])
    return cron_rate(row["expression"])


def postgres_reader(pool: asyncpg.Pool[Any]) -> UsageReader:
    """Reads a tenant's usage: two index scans (job_service/quotas.sql)."""
    async def read(tenant: str) -> Usage:
        async with pool.acquire() as conn:
            jobs = await conn.fetchval(QUERIES["tenant_jobs"], tenant)
            schedules = await conn.fetch(QUERIES["tenant_recurring_schedules"], tenant)
        return Usage(int(jobs), sum(_schedule_rate(r) * r["n"] for r in schedules))
    return read
