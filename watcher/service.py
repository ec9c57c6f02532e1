"""The watcher: loads firings due before the horizon from Postgres into the Redis due-set."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge
from pydantic import Field
from redis.exceptions import RedisError

from duetime import postgres
from duetime.due_set import DueSet, Load
from duetime.lifecycle import Lifecycle
from duetime.loading import entries_for, plan, record_skipped, run_template
from duetime.ops import ops_app, serve
from duetime.redis_client import redis_client
from duetime.settings import (
    HttpSettings,
    KafkaSettings,
    PostgresSettings,
    RedeliverySettings,
    RedisSettings,
)
from duetime.sql import load_queries
from duetime.timeutil import now_ms, to_ms, utcnow
from schemas.api import JobSpec
from watcher.consumer_lag import ConsumerLag
from watcher.integrity import Integrity

log = logging.getLogger(__name__)
QUERIES = load_queries("watcher")
LOADED = Counter("duetime_watcher_firings_loaded_total", "Firings placed into the due-set")
DUE_SIZE = Gauge("duetime_due_set_entries", "Entries waiting in the due-set")
SHARD_SIZE = Gauge("duetime_due_set_shard_entries", "Entries waiting in one shard of the due-set",
                   ["shard"])
TRIMMED = Counter("duetime_due_set_finished_jobs_forgotten_total",
                  "Cancelled or completed jobs forgotten by the due-set after the redelivery window")
USED_MEMORY = Gauge("duetime_redis_used_memory_bytes", "Memory Redis uses (INFO used_memory)")
MAX_MEMORY = Gauge("duetime_redis_maxmemory_bytes", "Redis's maxmemory (0: unlimited)")
UNLOADABLE = Counter("duetime_watcher_unloadable_jobs_total",
                     "Due jobs whose stored row this watcher cannot read or plan (skipped)")


class Settings(PostgresSettings, RedisSettings, RedeliverySettings, HttpSettings, KafkaSettings):
    http_port: int = 18104
    poll_seconds: float = Field(default=1.0, gt=0)
    window_seconds: float = Field(default=20.0, gt=0)
    batch_size: int = Field(default=500, ge=1)
    # Above this share of Redis's maxmemory the watcher warns: Redis runs with noeviction, so
    # once full it refuses writes (commands and firings stop) rather than lose due-set keys.
    redis_memory_warn_ratio: float = Field(default=0.8, gt=0, le=1)
    # How often the consumer groups' lag is measured for /metrics (watcher.consumer_lag).
    lag_seconds: float = Field(default=10.0, gt=0)


class Watcher:
    def __init__(self, pool: asyncpg.Pool[Any], due_set: DueSet, settings: Settings) -> None:
        self.pool, self.due_set, self.settings = pool, due_set, settings
        self.memory_warned_ms = 0
        self.unreadable: set[tuple[str, int]] = set()  # (job_id, version) logged as unloadable
        self.integrity = Integrity(pool, due_set, QUERIES)

    async def ensure_redis_intact(self) -> str | None:
        """If Redis lost data (flushed, restarted, failed over), rebuild the due-set."""
        return await self.integrity.ensure()

    async def load_once(self) -> int:
        """Load every firing due before now + window; returns how many were loaded."""
        now = utcnow()
        horizon = now + timedelta(seconds=self.settings.window_seconds)
        # The loading path's heartbeat: after a silence, firings due past the last load's
        # horizon were never loaded in time: an outage, judged like the dispatcher's (ADR 0011).
        outages = await self.due_set.loaded(to_ms(now), to_ms(horizon) - to_ms(now))
        total = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(QUERIES["claim_due_jobs"], horizon,
                                        self.settings.batch_size)
                ids, cursors, planned = [], [], []
                skipped: list[tuple[str, str, datetime]] = []
                loads: list[Load] = []
                for row in rows:
                    try:
                        spec = JobSpec.model_validate(row["spec"])
                        window = plan(spec, row["created_at"], row["enqueue_at"], now, horizon,
                                      row["planned_count"],
                                      outages[self.due_set.shard_of(row["job_id"])])
                    except (ValueError, OverflowError, ArithmeticError) as exc:
                        # One row this code cannot read (a writer on newer code during a
                        # rolling upgrade, a row edited by hand) must not stop loading for
                        # every tenant: it keeps its cursor, so a watcher that can read it
                        # loads it later, and the rest of the batch goes on.
                        self.unloadable(row, exc)
                        continue
                    loads.append(Load(
                        row["job_id"], row["version"], "active",
                        run_template(row["job_id"], row["tenant"], row["version"], spec),
                        entries_for(row["job_id"], row["version"], spec, window.fire,
                                    window.next_ms)))
                    ids.append(row["job_id"])
                    cursors.append(window.cursor)
                    planned.append(len(window.fire))
                    skipped += [(row["job_id"], row["tenant"], t) for t in window.skipped]
                    total += len(window.fire)
                # One round trip for the batch, inside the transaction like the writer's: a
                # crash before the commit leaves the cursors where they were and the next load
                # adds the same entries again (NX: harmless).
                await self.due_set.load_many(loads)
                if ids:
                    await conn.execute(QUERIES["advance_cursors"], ids, cursors, planned)
                await record_skipped(conn, skipped)
            # A full batch of rows none of which could be loaded would come back as it is.
            if len(rows) < self.settings.batch_size or not ids:
                break
        LOADED.inc(total)
        return total


    def unloadable(self, row: asyncpg.Record, exc: Exception) -> None:
        UNLOADABLE.inc()
        key = (row["job_id"], row["version"])
        if key not in self.unreadable:  # once per job version, not once per poll
            self.unreadable.add(key)
            log.error("due job not loaded: its stored row cannot be read or planned",
                      extra={"job_id": row["job_id"], "tenant": row["tenant"],
                             "version": row["version"], "error": repr(exc)[:500]})

    async def maintain_redis(self) -> int:
        """Forget finished jobs past the redelivery window and report Redis's memory.

        Returns how many finished jobs were forgotten.
        """
        now = now_ms()
        adopted = await self.due_set.adopt_finished(now)
        if adopted:
            log.info("finished jobs given a tombstone time", extra={"count": adopted})
        forgotten = await self.due_set.trim_finished(now)
        TRIMMED.inc(forgotten)
        used, limit = await self.due_set.memory()
        USED_MEMORY.set(used)
        MAX_MEMORY.set(limit)
        if limit and used >= limit * self.settings.redis_memory_warn_ratio \
                and now - self.memory_warned_ms >= 60_000:
            self.memory_warned_ms = now
            log.warning("redis memory high: it refuses writes when full",
                        extra={"used_memory": used, "maxmemory": limit})
        return forgotten


async def poll(lifecycle: Lifecycle, watcher: Watcher) -> None:
    lifecycle.ready = True
    while not lifecycle.stop.is_set():
        try:
            await watcher.ensure_redis_intact()
            loaded = await watcher.load_once()
            if loaded:
                log.info("firings loaded", extra={"count": loaded})
            await report_due_depth(watcher.due_set)
            await watcher.maintain_redis()
        except (OSError, RedisError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("load failed, retrying", extra={"error": repr(exc)})
        if await lifecycle.sleep(watcher.settings.poll_seconds):
            return


async def report_due_depth(due_set: DueSet) -> None:
    async with due_set.redis.pipeline(transaction=False) as pipe:
        for shard in range(due_set.shards):
            pipe.zcard(due_set.key("due", shard))
        depths = [int(n) for n in await pipe.execute()]
    for shard, depth in enumerate(depths):
        SHARD_SIZE.labels(str(shard)).set(depth)
    DUE_SIZE.set(sum(depths))


async def measure_lag(lifecycle: Lifecycle, lag: ConsumerLag, every_seconds: float) -> None:
    """Keep the consumer-lag gauge fresh; Kafka being away only leaves it stale (and logged)."""
    try:
        while True:
            try:
                await lag.measure()
            except Exception as exc:  # metrics must never stop the watcher
                log.warning("consumer lag not measured", extra={"error": repr(exc)})
                await lag.close()  # reconnect next time
            if await lifecycle.sleep(every_seconds):
                return
    finally:
        await lag.close()


async def main(lifecycle: Lifecycle) -> None:
    settings = Settings()
    redis = redis_client(settings)
    async with postgres.pool(settings) as pool:
        due_set = DueSet(redis, settings.due_shards,
                         redelivery_window_s=settings.run_redelivery_seconds)
        watcher = Watcher(pool, due_set, settings)
        try:
            await lifecycle.supervise({
                "http": serve(ops_app(lifecycle), settings.http_host, settings.http_port, lifecycle),
                "poll": poll(lifecycle, watcher),
                "lag": measure_lag(lifecycle, ConsumerLag(settings), settings.lag_seconds),
            })
        finally:
            await redis.aclose()
