"""Runs still waiting past their job's `late_after_seconds` raise a `late` alert while they wait
(ADR 0033): the writer's query against a database of its own, the due-set on real Redis."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from duetime.due_set import DueSet
from duetime.run_ids import run_id_for
from duetime.timeutil import to_ms
from tests.integration.test_due_set import due
from writer.alerts import raise_waiting
from writer.service import QUERIES

__all__ = ["due"]

NOW = datetime.now(UTC).replace(microsecond=0)


async def job(pool: asyncpg.Pool[Any], next_run_at: datetime, late_after: object = 2,
              state: str = "active") -> str:
    job_id = f"j{uuid.uuid4().hex[:10]}"
    spec: dict[str, Any] = {"name": "n"} if late_after is None else {
        "name": "n", "late_after_seconds": late_after}
    await pool.execute(
        "INSERT INTO jobs (job_id, tenant, name, spec, schedule_type, target_type, state,"
        " next_run_at, created_command, created_at, updated_at)"
        " VALUES ($1, 't', 'n', $2, 'interval', 'http', $3, $4, 'c', $5, $5)",
        job_id, spec, state, next_run_at, NOW - timedelta(hours=1))
    return job_id


async def run(pool: asyncpg.Pool[Any], job_id: str, scheduled_at: datetime, status: str,
              attempt: int = 1) -> None:
    await pool.execute(
        "INSERT INTO job_runs (run_id, job_id, tenant, scheduled_at, attempt, status, modified_at)"
        " VALUES ($1, $2, 't', $3, $4, $5, $6)",
        run_id_for(job_id, to_ms(scheduled_at)), job_id, scheduled_at, attempt, status,
        scheduled_at)


async def late(pool: asyncpg.Pool[Any]) -> dict[str, dict[str, Any]]:
    rows = await pool.fetch("SELECT job_id, run_id, detail FROM alerts WHERE kind = 'late'")
    return {r["job_id"]: {"run_id": r["run_id"], **r["detail"]} for r in rows}


async def test_waiting_runs_past_their_limit_are_late_once(fresh_db: asyncpg.Pool[Any],
                                                           due: DueSet) -> None:
    never_queued = await job(fresh_db, NOW - timedelta(seconds=5))
    queued = await job(fresh_db, NOW + timedelta(seconds=55))
    await run(fresh_db, queued, NOW - timedelta(seconds=5), "queued")
    assert await raise_waiting(fresh_db, due, QUERIES, NOW) == 2
    found = await late(fresh_db)
    assert found[never_queued]["waiting"] == "not queued"
    assert found[queued]["waiting"] == "queued"
    assert found[queued]["run_id"] == run_id_for(queued, to_ms(NOW - timedelta(seconds=5)))
    assert found[queued]["late_after_seconds"] == 2
    # Still waiting on the next look: nothing more is raised.
    assert await raise_waiting(fresh_db, due, QUERIES, NOW + timedelta(seconds=2)) == 0


async def test_what_is_not_waiting_or_not_late_yet_raises_nothing(fresh_db: asyncpg.Pool[Any],
                                                                  due: DueSet) -> None:
    await job(fresh_db, NOW - timedelta(seconds=1))  # within its 2 s
    await job(fresh_db, NOW - timedelta(seconds=5), late_after=None)  # asks for no alert
    await job(fresh_db, NOW - timedelta(seconds=5), late_after="2")  # not a number: ignored
    await job(fresh_db, NOW - timedelta(seconds=5), state="paused")
    await job(fresh_db, NOW - timedelta(days=2))  # the operator's alert, not news
    skipped = await job(fresh_db, NOW - timedelta(seconds=5))
    await run(fresh_db, skipped, NOW - timedelta(seconds=5), "skipped")
    retry = await job(fresh_db, NOW + timedelta(seconds=55))
    await run(fresh_db, retry, NOW - timedelta(seconds=5), "queued", attempt=2)
    # An executor took these; their statuses are not applied yet.
    held = await job(fresh_db, NOW - timedelta(seconds=5))
    done = await job(fresh_db, NOW + timedelta(seconds=55))
    await run(fresh_db, done, NOW - timedelta(seconds=5), "queued")
    for job_id in (held, done):
        runkey = f"{run_id_for(job_id, to_ms(NOW - timedelta(seconds=5)))}:1"
        shard = due.shard_of(job_id)
        if job_id == held:
            await due.redis.zadd(due.key("leases", shard), {runkey: to_ms(NOW) + 30_000})
        else:
            await due.redis.set(due.done_key(shard, runkey), 1, ex=60)
    assert await raise_waiting(fresh_db, due, QUERIES, NOW) == 0
    assert await late(fresh_db) == {}
