"""The dispatcher: moves due entries from the due-set to `duetime.runs`, on time.

It sleeps until the next entry is due (never a fixed tick) and pops entries a few
milliseconds early; executors hold each run until its due instant, so runs are never early
and the Kafka hop does not add lateness.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram
from pydantic import Field, ValidationError
from redis.exceptions import RedisError

from dispatcher.requests import (
    apply_catchup,
    dropped_status,
    queued_status,
    run_request,
    skipped_status,
)
from duetime import kafka
from duetime.due_set import OUTAGE_GAP_MS, DueSet, Popped
from duetime.lifecycle import Lifecycle
from duetime.ops import ops_app, serve
from duetime.redis_client import redis_client
from duetime.settings import HttpSettings, KafkaSettings, RedisSettings
from duetime.timeutil import now_ms, utcnow
from schemas.event_json import run_request_json
from schemas.events import RunStatusChanged
from schemas.topics import RUNS_STATUS, runs_topic

log = logging.getLogger(__name__)
DISPATCHED = Counter("duetime_dispatcher_runs_total", "Run requests acknowledged by Kafka")
DROPPED = Counter("duetime_dispatcher_dropped_total", "Entries dropped at dispatch", ["reason"])
REQUEUED = Counter("duetime_dispatcher_requeued_total", "In-flight entries put back")
POP_LAG = Histogram("duetime_dispatcher_pop_lag_seconds", "Pop time minus due time",
                    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1, 5))


class Settings(KafkaSettings, RedisSettings, HttpSettings):
    http_port: int = 18105
    # Entries are popped this early; executors hold each run until its due instant, so the
    # Kafka hop (and its jitter) happens before the due time instead of after it. 300, not
    # 100: while creates load Kafka and the CPUs, that hop sometimes took longer than 100 ms
    # and the run started late (ADR 0042).
    lookahead_ms: int = Field(default=300, ge=0, le=1000)
    max_unacked_batches: int = Field(default=64, ge=1)
    # The longest sleep with nothing due within the lookahead. An entry stored less than
    # lookahead + max_idle before its instant (a retry without backoff) may be popped up to
    # this much later; anything stored earlier is popped on time. Each idle round is a Redis
    # pipeline over every shard: at 25 ms, ~4 % of a core with nothing to do.
    max_idle_ms: int = Field(default=50, ge=1, le=1000)
    # Rounds are at least this far apart unless one hit the batch limit: at a steady rate the
    # next entry enters the lookahead a millisecond after a round, and a round per entry cost
    # a Redis trip, a Kafka request and an executor fetch per firing. Entries are still popped
    # lookahead - min_round_ms (260 ms) before they are due, so it costs no precision. 40, not
    # 10: at 200 firings/s a round per 2 firings kept a slow box busy; per 8, the dispatcher
    # used 0.09 of a core less and Kafka and Redis less too (ADR 0049). What it costs: a job
    # due at once waits for the next round, ≤ 40 ms under load (≤ max_idle_ms when idle).
    min_round_ms: int = Field(default=40, ge=0, le=100)
    batch_size: int = Field(default=500, ge=1)
    inflight_timeout_ms: int = Field(default=5000, ge=100)
    # The dispatching path's heartbeat (ADR 0011): each round proves it alive up to the oldest
    # run request Kafka has not acknowledged yet. A silence longer than this is an outage, and
    # only firings due inside one were missed (their job's catch-up policy decides); an entry
    # popped late because the system was busy always fires.
    outage_gap_ms: int = Field(default=OUTAGE_GAP_MS, ge=1000)


class Dispatcher:
    def __init__(self, due_set: DueSet, producer: AIOKafkaProducer, settings: Settings) -> None:
        self.due_set, self.producer, self.settings = due_set, producer, settings
        # Acknowledgements are awaited off the pop loop, so a slow ack never delays the next
        # pop; the number of batches waiting for one is bounded.
        self.unacked = asyncio.Semaphore(settings.max_unacked_batches)
        self.ack_tasks: set[asyncio.Task[None]] = set()
        # When each batch still waiting for Kafka was sent, and since when Kafka has been
        # failing (None: it is not): together they say up to when the path is proven alive.
        self.sent_at: dict[asyncio.Task[None], int] = {}
        self.failing_since: int | None = None
        # Entries whose run requests Kafka holds, per shard: they leave the in-flight set in
        # the next round's round trip rather than in one of their own (ADR 0024).
        self.acks: dict[int, list[str]] = {}

    def proven_ms(self, now: int) -> int:
        """Up to when the dispatching path is proven alive: everything sent before this was
        acknowledged by Kafka (a slow or failing Kafka holds the heartbeat back)."""
        return min([now, *self.sent_at.values(),
                    *([] if self.failing_since is None else [self.failing_since])])

    async def dispatch(self) -> tuple[int, int | None]:
        """Beat the heartbeat, then pop and publish everything due (plus lookahead) in every
        shard; entries missed in an outage follow their job's catch-up policy.

        Returns how many entries were popped and when the earliest remaining one is due.
        """
        now = now_ms()
        acks, self.acks = self.acks, {}
        try:
            done = await self.due_set.dispatch_round(now, now + self.settings.lookahead_ms,
                                                     self.settings.batch_size, self.proven_ms(now),
                                                     self.settings.outage_gap_ms, acks)
        except BaseException:
            self._pending_acks(acks)  # acknowledging again is harmless; losing one is not
            raise
        count = 0
        ready: list[tuple[int, Popped]] = []
        missed: list[tuple[int, Popped]] = []
        for shard, popped in done.popped.items():
            count += len(popped)
            for p in popped:
                if p.verdict != "run":
                    await self._dropped(p)
            fire, skip = apply_catchup([p for p in popped if p.verdict == "run"],
                                       done.outages.get(shard, []))
            ready += [(shard, p) for p in fire]
            missed += [(shard, p) for p in skip]
        if ready or missed:
            # Across shards too: earliest due first, then higher priority first.
            ready.sort(key=lambda sp: (sp[1].due_ms, -(sp[1].entry.priority if sp[1].entry else 0)))
            await self._publish(ready, missed, now)
        return count, done.head

    async def _dropped(self, popped: Popped) -> None:
        DROPPED.labels(popped.verdict).inc()
        log.info("entry dropped", extra={"member": popped.member, "reason": popped.verdict})
        # Stale entries belong to an older version of the job (an edit won); a paused job's
        # firing is recorded as skipped so the user sees it was not made; an attempt whose
        # executor was lost and whose job ended since is recorded as ended (dropped_status).
        event = self._record_of(popped, partial(dropped_status, popped, utcnow()))
        if event is not None:
            await self.producer.send(RUNS_STATUS, kafka.encode(event), key=event.job_id.encode())

    def _record_of(self, popped: Popped,
                   make: Callable[[], RunStatusChanged | None]) -> RunStatusChanged | None:
        try:
            return make()
        except (ValidationError, LookupError, TypeError, ValueError) as exc:
            log.error("unusable entry not recorded", extra={"member": popped.member,
                                                             "error": repr(exc)})
            return None

    async def _publish(self, ready: list[tuple[int, Popped]], missed: list[tuple[int, Popped]],
                       now: int) -> None:
        futures: list[asyncio.Future[Any]] = []
        acked: dict[int, list[str]] = {}
        # A firing skipped by catch-up leaves the in-flight set once its record is in Kafka.
        for shard, p in missed:
            acked.setdefault(shard, []).append(p.member)
            event = self._record_of(p, partial(skipped_status, p, "catchup", utcnow()))
            if event is not None:
                futures.append(await self.producer.send(RUNS_STATUS, kafka.encode(event),
                                                        key=event.job_id.encode()))
        runs = 0
        for shard, p in ready:
            POP_LAG.observe(max(0, now - p.due_ms) / 1000)
            acked.setdefault(shard, []).append(p.member)
            try:
                # Stamped per request, so queued_at shows the dispatch order.
                req = run_request(p, utcnow())
            except (ValidationError, LookupError, TypeError, ValueError) as exc:
                # One entry no run request can be made from must not stop all dispatching.
                log.error("unusable entry dropped", extra={"member": p.member, "error": repr(exc)})
                DROPPED.labels("invalid").inc()
                continue
            key = req["job_id"].encode()
            # Command runs go to their priority lane, the rest to duetime.runs (ADR 0031).
            topic = runs_topic(req["target"]["type"], req["priority"])
            futures.append(await self.producer.send(topic, run_request_json(req), key=key))
            futures.append(await self.producer.send(RUNS_STATUS, queued_status(req), key=key))
            runs += 1
        await self.unacked.acquire()
        task = asyncio.create_task(self._acknowledge(futures, acked, runs, now))
        self.sent_at[task] = now
        self.ack_tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self.ack_tasks.discard(task)
        self.sent_at.pop(task, None)

    async def _acknowledge(self, futures: list[asyncio.Future[Any]],
                           acked: dict[int, list[str]], runs: int, sent: int) -> None:
        # Entries leave the in-flight set only once Kafka holds their run requests; if this
        # fails, they stay in-flight and are requeued after inflight_timeout_ms.
        try:
            await asyncio.gather(*futures)
            if self.failing_since is not None and sent >= self.failing_since:
                self.failing_since = None
            self._pending_acks(acked)
            DISPATCHED.inc(runs)
        except (KafkaError, OSError) as exc:
            if isinstance(exc, KafkaError) and self.failing_since is None:
                self.failing_since = sent
            log.warning("run requests not acknowledged; left in flight",
                        extra={"count": runs, "error": repr(exc)})
        finally:
            self.unacked.release()

    def _pending_acks(self, acked: dict[int, list[str]]) -> None:
        for shard, members in acked.items():
            self.acks.setdefault(shard, []).extend(members)

    async def drain(self) -> None:
        """On shutdown: wait for outstanding acknowledgements and write them (entries stay
        safe either way: one left in flight is requeued, and its duplicate refused by claim)."""
        if self.ack_tasks:
            await asyncio.wait(set(self.ack_tasks), timeout=5)
        acks, self.acks = self.acks, {}
        try:
            for shard, members in acks.items():
                await self.due_set.ack_inflight(shard, members)
        except (RedisError, OSError) as exc:
            log.warning("acknowledgements not written; entries left in flight",
                        extra={"count": sum(map(len, acks.values())), "error": repr(exc)})

    async def requeue_stale(self) -> None:
        now = now_ms()
        for shard in range(self.due_set.shards):
            n = await self.due_set.requeue_inflight(shard, now - self.settings.inflight_timeout_ms,
                                                    now)
            if n:
                REQUEUED.inc(n)
                log.warning("in-flight entries requeued", extra={"shard": shard, "count": n})

    def idle_ms(self, head: int | None) -> float:
        """How long to sleep: until the next entry is due (minus lookahead), at most max_idle
        and at least min_round."""
        if head is None:
            return self.settings.max_idle_ms
        wait = head - self.settings.lookahead_ms - now_ms()
        # Never a floor above the lookahead: an entry would then be popped after its instant.
        floor = min(self.settings.min_round_ms, self.settings.lookahead_ms)
        return max(float(floor), min(float(self.settings.max_idle_ms), float(wait)))


async def run_loop(lifecycle: Lifecycle, dispatcher: Dispatcher) -> None:
    lifecycle.ready = True
    last_sweep = 0
    while not lifecycle.stop.is_set():
        try:
            popped, head = await dispatcher.dispatch()
            if now_ms() - last_sweep > 1000:
                await dispatcher.requeue_stale()
                last_sweep = now_ms()
            # Everything due within the lookahead was popped unless a shard hit the batch
            # limit: only then pop again at once. Otherwise wait for the next entry to come
            # within the lookahead; a round per few entries was rounds, Kafka batches and
            # CPU spent on nothing (ADR 0024).
            if popped >= dispatcher.settings.batch_size:
                continue
            wait = dispatcher.idle_ms(head)
        except (RedisError, KafkaError, OSError) as exc:
            log.warning("dispatch failed, retrying", extra={"error": repr(exc)})
            wait = 500
        if wait > 0:
            await lifecycle.sleep(wait / 1000)
    await dispatcher.drain()


async def main(lifecycle: Lifecycle) -> None:
    settings = Settings()
    redis = redis_client(settings)
    async with kafka.producer(settings, "dispatcher") as producer:
        dispatcher = Dispatcher(DueSet(redis, settings.due_shards), producer, settings)
        try:
            await lifecycle.supervise({
                "http": serve(ops_app(lifecycle), settings.http_host, settings.http_port, lifecycle),
                "dispatch": run_loop(lifecycle, dispatcher),
            })
        finally:
            await redis.aclose()
