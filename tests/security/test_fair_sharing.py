"""Hole 6 (the executor's part): one tenant must not starve the others. Tenant A floods a
tarpit — a target that accepts connections and never answers — with more runs than the executor
has slots; before, they took every slot (and every connection) until they timed out, and
tenant B's runs waited behind them. Now A holds at most its share of the slots and of the
connections to one host, the rest of A's runs wait aside holding nothing, and every one of
B's runs at 50/s fires while A's calls still hold their slots — before the first of them could
time out and free one. That is the property, stated without a stopwatch: had B waited behind A,
its lateness would be at least A's timeout (12 s). B's lateness on a quiet box (tens of ms) is a
benchmark figure, not this test's business.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.jobs import http_job
from tests.support.sink import Sink, start_raw_server
from tests.support.waiting import eventually

# Floods the executor's slots: what other tests fire meanwhile would wait behind it.
pytestmark = pytest.mark.alone

FLOOD = 1100  # more runs than the executor's 1,000 slots
B_RATE, B_SECONDS = 50, 10
A_TIMEOUT = 12  # A's calls outlast B's whole window
PER_HOST = 64  # the executor's default DUETIME_HTTP_CONNECTIONS_PER_HOST
WAITING_FOR_CONNECTION = "duetime_executor_calls_waiting_for_connection"


class Tarpit:
    """Accepts every connection and never answers; counts the connections open at once."""

    def __init__(self) -> None:
        self.open = self.peak = self.accepted = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Tarpit:
        self.server, self.port = await start_raw_server(self._hold)
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.accepted += 1
        self.peak = max(self.peak, self.open)
        self.writers.append(writer)
        try:
            while await reader.read(65536):
                pass
        finally:
            self.open -= 1

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            self.server.close()


@pytest.fixture
async def tarpit() -> AsyncIterator[Tarpit]:
    pit = await Tarpit().start()
    yield pit
    await pit.stop()


async def _create_all(api: httpx.AsyncClient, specs: list[dict[str, Any]]) -> list[str]:
    gate = asyncio.Semaphore(32)

    async def one(spec: dict[str, Any]) -> str:
        async with gate:
            resp = await api.post("/jobs", json=spec)
        assert resp.status_code == 202, resp.text
        job_id: str = resp.json()["job_id"]
        return job_id

    return list(await asyncio.gather(*(one(spec) for spec in specs)))


async def _cancel_all(api: httpx.AsyncClient, job_ids: list[str]) -> None:
    gate = asyncio.Semaphore(32)

    async def one(job_id: str) -> None:
        async with gate:
            await api.delete(f"/jobs/{job_id}")

    await asyncio.gather(*(one(job_id) for job_id in job_ids), return_exceptions=True)


def _once(url: str, at: datetime, **target: Any) -> dict[str, Any]:
    spec = http_job(url, {"type": "once", "at": at.isoformat()}, retry={"max_attempts": 1})
    spec["target"].update(target)
    return spec


async def test_a_flooding_tenant_does_not_delay_another(
    api: httpx.AsyncClient, api_b: httpx.AsyncClient, pg: asyncpg.Pool[Any], tarpit: Tarpit,
    make_sink: Callable[..., Awaitable[Sink]], path: str,
) -> None:
    sink = await make_sink()
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=25)
    # Half of A's calls name the tarpit `localhost`: one server under two names still gets at
    # most PER_HOST connections (ADR 0062).
    flood = [_once(f"http://{('127.0.0.1', 'localhost')[i % 2]}:{tarpit.port}/a", t0,
                   timeout_seconds=A_TIMEOUT) for i in range(FLOOD)]
    steady = [_once(sink.url(path), t0 + timedelta(seconds=1 + i / B_RATE))
              for i in range(B_RATE * B_SECONDS)]
    a_jobs: list[str] = []
    try:
        a_jobs += await _create_all(api, flood)
        await _create_all(api_b, steady)
        assert datetime.now(UTC) < t0 - timedelta(seconds=3), "creating the jobs took too long"

        hits = await sink.wait_for(path, len(steady), timeout=25 + 1 + B_SECONDS + 20)
        assert len(hits) == len(steady)
        lateness_ms = [(h.received_at - datetime.fromisoformat(
            h.headers["X-Duetime-Scheduled-At"]).timestamp()) * 1000 for h in hits]
        # Every B firing was made before any of A's calls could have timed out (they all
        # started at t0, B's window ends at t0 + 11 s, A's calls last 12 s): none of B's waited
        # for a slot A gave back. Half the timeout keeps a margin for a loaded box.
        assert max(lateness_ms) < A_TIMEOUT * 1000 / 2, sorted(lateness_ms)[-10:]

        # A's calls held the tarpit's connections through B's window, at most PER_HOST at once
        # under both its names, and end as timed out.
        assert tarpit.accepted >= PER_HOST and tarpit.peak <= PER_HOST, (tarpit.accepted,
                                                                         tarpit.peak)
        # The rest of A's admitted calls wait for the tarpit's slots, and operators see them.
        assert (await _gauge(WAITING_FOR_CONNECTION) or 0) > 0
        statuses = await eventually(lambda: _a_statuses(pg, a_jobs), timeout=A_TIMEOUT + 15)
        assert set(statuses) == {"timed_out"}, statuses
    finally:
        await _cancel_all(api, a_jobs)
    # Cancelled, they wait no more: the gauge counts only calls that still want a slot.
    assert await eventually(lambda: _gauge_is(WAITING_FOR_CONNECTION, 0.0), timeout=30)


async def _gauge(name: str) -> float | None:
    """A gauge of the stack's executor, as its /metrics shows it."""
    port = os.environ.get("DUETIME_EXECUTOR_PORT", "18106")
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


async def _gauge_is(name: str, value: float) -> bool:
    return await _gauge(name) == value


async def _a_statuses(pg: asyncpg.Pool[Any], job_ids: list[str]) -> dict[str, int] | None:
    rows = await pg.fetch("SELECT status, count(*) AS n FROM job_runs WHERE job_id = ANY($1) "
                          "AND status NOT IN ('scheduled', 'queued', 'running') GROUP BY status", job_ids)
    statuses = {row["status"]: row["n"] for row in rows}
    return statuses if statuses.get("timed_out", 0) >= PER_HOST else None
