"""The watcher loads a batch of due jobs into the due-set in one round trip (issue 8), with the
same entries as loading them one by one."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis

from duetime.due_set import DueSet, Entry
from duetime.timeutil import to_ms, utcnow
from tests.integration.test_writer_batches import RoundTrips
from watcher.service import Settings, Watcher

JOBS = 60


async def _due_jobs(pool: asyncpg.Pool[Any], count: int) -> list[str]:
    """Interval jobs (every second) whose next firing is due inside the watcher's window."""
    now = utcnow()
    ids = [uuid.uuid4().hex for _ in range(count)]
    spec = {"name": "w", "schedule": {"type": "interval", "every_seconds": 1},
            "target": {"type": "http", "url": "http://127.0.0.1:18999/w"}}
    await pool.executemany(
        "INSERT INTO jobs (job_id, tenant, name, spec, schedule_type, target_type, state, "
        "version, priority, labels, next_run_at, enqueue_at, created_command, created_at, "
        "updated_at, planned_count) VALUES ($1, 't', 'w', $2, 'interval', 'http', 'active', 1, "
        "5, '{}', $3, $3, $1, $4, $4, 0)",
        [(job_id, orjson.loads(orjson.dumps(spec)), now + timedelta(seconds=1), now)
         for job_id in ids])
    return ids


async def test_a_batch_of_due_jobs_is_loaded_in_one_round_trip(
    fresh_db: asyncpg.Pool[Any], env: dict[str, str], due_prefix: str,
) -> None:
    ids = await _due_jobs(fresh_db, JOBS)
    redis = Redis.from_url(env["DUETIME_REDIS_URL"])
    try:
        due = DueSet(redis, 4, prefix=due_prefix)
        watcher = Watcher(fresh_db, due, Settings(window_seconds=3, batch_size=500))
        trips = RoundTrips(redis)
        loaded = await watcher.load_once()
        # The loading heartbeat (one pipeline over the shards) and one load for all 60 jobs.
        assert trips.count == 2
        assert loaded >= JOBS * 2  # every second, up to 3 s ahead: at least two each
        for job_id in ids:
            shard = due.shard_of(job_id)
            assert await redis.hget(due.key("jobs", shard), job_id) == b"1|active"
            assert await redis.hexists(due.key("specs", shard), job_id)
            members = await redis.zrangebyscore(due.key("due", shard), "-inf", "+inf")
            texts = [m.decode() for m in members if isinstance(m, bytes)]
            mine = [Entry.parse(m) for m in texts if job_id in m]
            assert len(mine) >= 2 and all(e.version == 1 for e in mine)
            # Each second of the interval, from its anchor, and nothing twice.
            assert len({e.scheduled_ms for e in mine}) == len(mine)
        cursors = await fresh_db.fetch("SELECT enqueue_at, planned_count FROM jobs")
        assert all(r["planned_count"] >= 2 for r in cursors)
        assert all(to_ms(r["enqueue_at"]) > to_ms(utcnow()) for r in cursors)
        # Nothing more is due before the window's end: a second pass loads nothing new.
        assert await watcher.load_once() == 0
    finally:
        await redis.aclose()


async def test_a_row_it_cannot_read_does_not_stop_loading_the_others(
    fresh_db: asyncpg.Pool[Any], env: dict[str, str], due_prefix: str,
) -> None:
    ids = await _due_jobs(fresh_db, 5)
    # A row written by newer code (a target type this watcher does not know), due first.
    await fresh_db.execute(
        "UPDATE jobs SET spec = jsonb_set(spec, '{target,type}', '\"teleport\"'), "
        "enqueue_at = enqueue_at - interval '1 second' WHERE job_id = $1", ids[0])
    redis = Redis.from_url(env["DUETIME_REDIS_URL"])
    try:
        due = DueSet(redis, 4, prefix=due_prefix)
        # batch_size 1: the unreadable row alone fills the first batch.
        watcher = Watcher(fresh_db, due, Settings(window_seconds=3, batch_size=1))
        assert await watcher.load_once() == 0  # a batch with nothing loadable ends the pass
        watcher = Watcher(fresh_db, due, Settings(window_seconds=3, batch_size=500))
        assert await watcher.load_once() >= 4 * 2
        for job_id in ids[1:]:
            assert await redis.hexists(due.key("specs", due.shard_of(job_id)), job_id)
        assert not await redis.hexists(due.key("specs", due.shard_of(ids[0])), ids[0])
        kept = await fresh_db.fetchval(
            "SELECT enqueue_at < now() + interval '1 second' FROM jobs WHERE job_id = $1", ids[0])
        assert kept  # its cursor did not move: a watcher that can read it loads it later
    finally:
        await redis.aclose()
