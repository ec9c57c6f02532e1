"""Redis and job_runs stay bounded (issue 6 defect 14, ADR 0013), against the real backends.

Due-set tests use a key prefix of their own; the retention test runs on a freshly migrated
database of its own, with partitions for months long past.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest
from redis.asyncio import Redis

from duetime.due_set import MANUAL, DueSet, Entry
from duetime.timeutil import now_ms, utcnow
from executor.service import Settings as ExecutorSettings
from watcher.service import MAX_MEMORY, USED_MEMORY, Watcher
from watcher.service import Settings as WatcherSettings
from writer.service import expire_runs

TEMPLATE = {"tenant": "t", "target": {"type": "http", "url": "http://x/y"}, "retry": {}}
WINDOW_S = 600


@pytest.fixture
async def due(redis: Redis) -> AsyncIterator[DueSet]:
    prefix = f"test{uuid.uuid4().hex[:12]}"
    yield DueSet(redis, shards=2, prefix=prefix, redelivery_window_s=WINDOW_S)
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)


async def _jobs_entry(due: DueSet, job_id: str) -> bytes | str | None:
    entry: bytes | str | None = await due.redis.hget(due.key("jobs", due.shard_of(job_id)), job_id)
    return entry


async def _spec(due: DueSet, job_id: str) -> bytes | str | None:
    spec: bytes | str | None = await due.redis.hget(due.key("specs", due.shard_of(job_id)), job_id)
    return spec


async def test_a_done_flag_lives_as_long_as_a_request_can_be_redelivered(due: DueSet) -> None:
    entry = Entry("a", 1, 1000, 1, 5)
    await due.load("a", 1, "active", TEMPLATE, [entry])
    assert await due.claim(entry, entry.member(), "x", 1000, 10_000) == "ok"
    await due.complete(entry, None, 0)
    ttl = await due.redis.ttl(due.done_key(due.shard_of("a"), entry.runkey))
    assert WINDOW_S - 10 < ttl <= WINDOW_S  # was 7 days: ~121 M flags at 200 runs/s
    assert await due.claim(entry, entry.member(), "y", 2000, 10_000) == "done"


def test_the_redelivery_window_is_a_setting_of_a_few_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ExecutorSettings().run_redelivery_seconds == 6 * 3600
    monkeypatch.setenv("DUETIME_RUN_REDELIVERY_SECONDS", "900")
    assert ExecutorSettings().run_redelivery_seconds == 900


async def test_a_cancelled_job_loses_its_spec_at_once_and_its_tombstone_after_the_window(
        due: DueSet) -> None:
    entry = Entry("c", 1, 1000, 1, 5)
    await due.load("c", 1, "active", TEMPLATE, [entry])
    # What the writer's cancel does: of the run template only the tenant stays, to record an
    # attempt its lost executor left `running` (pop_due's "lost-cancelled").
    await due.load("c", 2, "cancelled", TEMPLATE, [])
    assert orjson.loads(await _spec(due, "c") or b"") == {"tenant": TEMPLATE["tenant"]}
    # A request already sent (and claimed) is still refused at start while the tombstone lasts.
    assert await due.claim(entry, entry.member(), "x", 1000, 10_000) == "ok"
    assert (await due.start(entry, "allow", 1000, "x", entry.member())).kind == "cancelled"
    now = now_ms()
    assert await due.trim_finished(now) == 0
    assert await _jobs_entry(due, "c") == b"2|cancelled"
    assert await due.trim_finished(now + WINDOW_S * 1000 + 5000) == 1
    assert await _jobs_entry(due, "c") is None
    assert await _spec(due, "c") is None
    assert await due.redis.zcard(due.key("finished", due.shard_of("c"))) == 0
    # Its entries left in the due-set are dropped, never run.
    assert [p.verdict for p in await due.pop_due(due.shard_of("c"), 2000, 2000, 10)] == ["unknown"]


async def test_a_completed_job_is_forgotten_after_the_window_but_not_before_its_run_now(
        due: DueSet) -> None:
    await due.load("done", 1, "active", TEMPLATE, [])
    await due.forget("done", 1, "completed")  # the writer, after the job's last run
    assert await _spec(due, "done") is None
    now = now_ms()
    run_at = now + 3600_000
    await due.load("again", 1, "completed", TEMPLATE, [Entry("again", 1, run_at, 1, 5, MANUAL)])
    assert await due.trim_finished(now + WINDOW_S * 1000 + 5000) == 1  # "done" only
    assert await _jobs_entry(due, "done") is None
    assert await _jobs_entry(due, "again") == b"1|completed"
    assert await _spec(due, "again") is not None
    assert await due.trim_finished(run_at + WINDOW_S * 1000 + 5000) == 1
    assert await _jobs_entry(due, "again") is None and await _spec(due, "again") is None


async def test_a_job_active_again_is_never_trimmed(due: DueSet) -> None:
    await due.load("p", 1, "completed", TEMPLATE, [])
    await due.load("p", 2, "active", TEMPLATE, [Entry("p", 2, 1000, 1, 5)])
    assert await due.trim_finished(now_ms() + WINDOW_S * 1000 + 5000) == 0
    assert await _jobs_entry(due, "p") == b"2|active"


async def test_jobs_that_ended_before_tombstones_existed_are_adopted_once(due: DueSet) -> None:
    for job_id, meta in (("old-c", "3|cancelled"), ("old-d", "1|completed"), ("live", "1|active")):
        await due.redis.hset(due.key("jobs", due.shard_of(job_id)), job_id, meta)
    now = now_ms()
    assert await due.adopt_finished(now) == 2
    assert await due.adopt_finished(now) == 0
    assert await due.trim_finished(now + WINDOW_S * 1000 + 5000) == 2
    assert await _jobs_entry(due, "live") == b"1|active"


async def test_the_watcher_trims_tombstones_and_reports_redis_memory(
        due: DueSet, pg: asyncpg.Pool[Any], caplog: pytest.LogCaptureFixture) -> None:
    await due.forget("gone", 4, "cancelled")
    old = now_ms() - WINDOW_S * 1000 - 5000
    await due.redis.zadd(due.key("finished", due.shard_of("gone")), {"gone": old})
    watcher = Watcher(pg, due, WatcherSettings(redis_memory_warn_ratio=1e-9))
    with caplog.at_level(logging.WARNING, logger="watcher.service"):
        assert await watcher.maintain_redis() == 1
    assert await _jobs_entry(due, "gone") is None
    config = await due.redis.config_get("maxmemory")
    assert MAX_MEMORY._value.get() == int(config["maxmemory"] or 0) > 0  # the stack sets maxmemory
    assert USED_MEMORY._value.get() > 0
    assert "redis memory high: it refuses writes when full" in caplog.messages


# ---- job_runs retention -----------------------------------------------------------------------


async def _add_run(pool: asyncpg.Pool[Any], scheduled: datetime, status: str,
                   modified: datetime) -> str:
    run_id = uuid.uuid4().hex
    await pool.execute(
        "INSERT INTO job_runs (run_id, job_id, tenant, scheduled_at, attempt, status, modified_at)"
        " VALUES ($1, 'j', 't', $2, 1, $3, $4)", run_id, scheduled, status, modified)
    return run_id


def _at(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


async def test_runs_past_retention_go_by_whole_month_never_unfinished_ones(
        fresh_db: asyncpg.Pool[Any]) -> None:
    await fresh_db.execute("SELECT ensure_job_runs_partitions('2001-01-01', 3)")
    old_jan = await _add_run(fresh_db, _at(2001, 1, 15), "succeeded", _at(2001, 1, 15))
    stuck_feb = await _add_run(fresh_db, _at(2001, 2, 15), "queued", _at(2001, 2, 15))
    mar = await _add_run(fresh_db, _at(2001, 3, 25), "failed", _at(2001, 3, 25))
    # Outside every monthly partition: judged by when they were last modified.
    old_default = await _add_run(fresh_db, _at(1990, 6, 1), "succeeded", _at(2001, 1, 20))
    late_default = await _add_run(fresh_db, _at(1990, 6, 2), "succeeded", utcnow())
    stuck_default = await _add_run(fresh_db, _at(1990, 6, 3), "running", _at(2001, 1, 20))
    cutoff = _at(2001, 3, 20)
    done = await expire_runs(fresh_db, (utcnow() - cutoff).days)
    assert {(r["partition_name"], r["action"], r["runs"]) for r in done} == {
        ("job_runs_200101", "dropped", None),
        ("job_runs_200102", "kept: runs not finished", 1),
        ("job_runs_default", "deleted", 1),
    }
    left = {r["run_id"] for r in await fresh_db.fetch("SELECT run_id FROM job_runs")}
    assert left == {stuck_feb, mar, late_default, stuck_default}
    assert old_jan not in left and old_default not in left
    parts = {r["relname"] for r in await fresh_db.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'job_runs'::regclass")}
    current = f"job_runs_{utcnow():%Y%m}"
    assert {"job_runs_200102", "job_runs_200103", "job_runs_default", current} <= parts
    assert "job_runs_200101" not in parts
