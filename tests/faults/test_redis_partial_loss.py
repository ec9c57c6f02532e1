"""Redis losing only the tail of its data (an AOF `everysec` crash, a failover to a replica that
missed the last writes) loses no job and no retry (issue 6 defect 10, ADR 0014).

The loss is made for real: Redis is stopped, the tail of its append-only file written since a
mark is cut off, and Redis starts again from what is left — its epoch marker survives (it is
older than the mark), so only the changed server run id can tell that data is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from redis.asyncio import Redis

from tests.support.jobs import Cleanup, http_job, wait_state
from tests.support.redis_client import reconnected
from tests.support.sink import Hit, Sink
from tests.support.stack import ROOT, stack
from tests.support.waiting import eventually

AOF_DIR = ROOT / ".stack" / "redis" / "appendonlydir"


async def _fresh_aof(redis: Redis) -> Path:
    """Rewrite the AOF so its incremental file is new (no rewrite will move it mid-test)."""
    await redis.bgrewriteaof()

    async def done() -> bool:
        info = await redis.info("persistence")
        return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

    await eventually(done, timeout=30, interval=0.2)
    manifest = (AOF_DIR / "appendonly.aof.manifest").read_text().splitlines()
    incr = [line.split()[1] for line in manifest if line.split()[-1] == "i"]
    return AOF_DIR / incr[-1]


def _fails_first_attempt(path: str) -> Callable[[Hit], int]:
    def status(hit: Hit) -> int:
        return 500 if hit.path == path and hit.headers.get("X-Duetime-Attempt") == "1" else 200
    return status


async def test_a_lost_aof_tail_loses_no_firing_and_no_retry(
    api: httpx.AsyncClient, redis: Redis, pg: asyncpg.Pool[Any], make_sink: Any, path: str,
    jobs: Cleanup,
) -> None:
    flaky = f"{path}/retry"
    sink: Sink = await make_sink(status_for=_fails_first_attempt(flaky))
    aof = await _fresh_aof(redis)
    mark = aof.stat().st_size  # everything Redis writes after this is about to be lost

    at = (datetime.now(UTC) + timedelta(seconds=12)).isoformat()
    once = await jobs.create(api, http_job(sink.url(f"{path}/once"), {"type": "once", "at": at}))
    retry = {"max_attempts": 2, "initial_delay_seconds": 12, "jitter": False}
    retried = await jobs.create(api, http_job(sink.url(flaky), {"type": "delay", "seconds": 0.5},
                                              retry=retry))
    # The retry is scheduled (Redis only, until now) and recorded as pending in Postgres.
    await sink.wait_for(flaky, 1, timeout=10)

    async def retry_recorded() -> bool:
        return bool(await pg.fetchval(
            "SELECT count(*) FROM job_runs WHERE job_id = $1 AND NOT final AND retry_at IS NOT NULL",
            retried))

    await eventually(retry_recorded, timeout=10)
    await wait_state(api, once, "active")

    stack("stop", "redis")
    with aof.open("r+b") as f:
        f.truncate(mark)
    stack("start", "redis")
    await reconnected(redis)

    assert len(await sink.wait_for(f"{path}/once", 1, timeout=30)) >= 1

    async def retried_once() -> bool:
        return any(h.headers.get("X-Duetime-Attempt") == "2" for h in sink.hits_for(flaky))

    # The lost retry is re-created from Postgres (a lost done flag may repeat attempt 1 too).
    await eventually(retried_once, timeout=30, interval=0.2)
    await wait_state(api, once, "completed")
    await wait_state(api, retried, "completed")
