"""The due-set is an index of Postgres that Redis may lose part of (issue 6 defect 10, ADR 0014):
the watcher notices a flushed or a different Redis server and rebuilds, retries included.

Runs on a database of its own (the rebuild's queries span every job) and a due-set key prefix of
its own on the real Redis."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from duetime.due_set import DueSet, Entry
from duetime.timeutil import to_ms, utcnow
from watcher.integrity import Integrity
from watcher.service import QUERIES

SPEC = {"name": "r", "schedule": {"type": "delay", "seconds": 1},
        "target": {"type": "http", "url": "http://127.0.0.1:9/x"}, "priority": 7}


@pytest.fixture
def due(redis: Redis, due_prefix: str) -> DueSet:
    return DueSet(redis, shards=2, prefix=due_prefix)


async def _job_with_a_pending_retry(db: asyncpg.Pool[Any]) -> tuple[str, int, int]:
    job_id, now = uuid.uuid4().hex, utcnow()
    scheduled, retry_at = now - timedelta(seconds=5), now + timedelta(seconds=60)
    await db.execute(
        "INSERT INTO jobs (job_id, tenant, name, spec, schedule_type, target_type, state,"
        " version, priority, next_run_at, created_command, created_at, updated_at)"
        " VALUES ($1, 'dev', 'r', $2, 'delay', 'http', 'active', 3, 7, $3, 'c', $4, $4)",
        job_id, SPEC, scheduled, now - timedelta(seconds=6))
    await db.execute(
        "INSERT INTO job_runs (run_id, job_id, tenant, scheduled_at, attempt, status,"
        " modified_at, final, retry_at) VALUES ($1, $2, 'dev', $3, 1, 'failed', now(), false, $4)",
        uuid.uuid4().hex, job_id, scheduled, retry_at)
    return job_id, to_ms(scheduled), to_ms(retry_at)


async def _score(due: DueSet, entry: Entry) -> float | None:
    score: float | None = await due.redis.zscore(due.key("due", due.shard_of(entry.job_id)),
                                                 entry.member())
    return score


async def test_a_flushed_due_set_is_rebuilt_with_its_pending_retries(
    fresh_db: asyncpg.Pool[Any], due: DueSet,
) -> None:
    job_id, scheduled_ms, retry_ms = await _job_with_a_pending_retry(fresh_db)
    integrity = Integrity(fresh_db, due, QUERIES)
    assert await integrity.ensure() == "flushed"  # no epoch marker under this prefix
    retry = Entry(job_id, 3, scheduled_ms, 2, 7)
    assert await _score(due, retry) == retry_ms  # the retry is back, due when it was
    assert await integrity.ensure() is None  # same server, marked: nothing to do


async def test_another_redis_server_means_a_rebuild_even_with_the_marker(
    fresh_db: asyncpg.Pool[Any], due: DueSet,
) -> None:
    job_id, scheduled_ms, retry_ms = await _job_with_a_pending_retry(fresh_db)
    await due.mark_epoch("long ago")  # the marker survived: only the tail of the data was lost
    await fresh_db.execute(QUERIES["record_due_set_state"], "a-server-that-is-gone")
    assert await Integrity(fresh_db, due, QUERIES).ensure() == "restarted or failed over"
    assert await _score(due, Entry(job_id, 3, scheduled_ms, 2, 7)) == retry_ms
    state = await fresh_db.fetchval("SELECT redis_run_id FROM due_set_state")
    assert state == (await due.identity())[0]
