"""The attempt protocol an executor follows around the due-set, whatever it runs (ADR 0031).

Claim (a lease) before anything runs; at the due instant `start` decides (fire, stale,
paused, cancelled, overlap); renew the lease while it runs; report the final status, then
`complete` (done flag, and the retry entry if another attempt is due). Both executors build on
these pieces: the webhook executor (executor/service.py) and the command executor (ADR 0031).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram
from redis.exceptions import RedisError

from duetime.clock import ReferenceClock
from duetime.due_set import DueSet, Entry, Start, StartVerdict
from schemas.events import RunStatus

log = logging.getLogger(__name__)
START_RETRIES = Counter("duetime_attempt_start_retries_total",
                        "Start verdicts (and abort flags of replaced runs) asked again after a "
                        "failure", ["step"])
# Where a firing's lateness comes from before its call, in steps finer than the firing's own
# lateness (whole ms): `wake`, how long after the reference clock had certainly reached the
# instant this process got to run; `verdict`, start_run.lua's round trip.
START_STEP = Histogram("duetime_attempt_start_step_seconds",
                       "Time an attempt's start took at its due instant, by step", ["step"],
                       buckets=(0.00025, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005,
                                0.01, 0.025, 0.1, 1))
# Transient failures of Kafka or Redis: a write that records an attempt is retried on these.
TRANSIENT = (KafkaError, RedisError, OSError, TimeoutError)
# Verdicts of start_run.lua that end an attempt without running it: (status, error, reason).
NOT_STARTED: dict[Start, tuple[RunStatus, str | None, str]] = {
    Start.CANCELLED: ("cancelled", "job cancelled", "cancelled"),
    Start.OVERLAP: ("skipped", None, "overlap"),
}
# Verdicts that leave the attempt open (not done): another version's firing, or the resumed
# job's, may still make it. The value is the reason recorded on the not-final `skipped` status.
NOT_FIRED: dict[Start, str] = {
    Start.STALE: "superseded by an edit of the job",
    Start.PAUSED: "paused",
}


async def start_when_due(due_set: DueSet, clock: ReferenceClock, entry: Entry, due_ms: int,
                         overlap: str, owner: str, member: str) -> StartVerdict:
    """At the due instant, let start_run.lua decide whether the attempt fires; a run it
    replaces is told to abort. Requests are dispatched a little early on purpose: this waits
    until the reference clock has certainly reached `due_ms`, however far this machine's clock
    is off (ADR 0012).

    A failed verdict (Redis restarting, a reply lost) is asked again until it comes: the
    script answers "lost" once the lease is no longer ours, so a retry never fires an attempt
    someone else took, and the attempt need not wait out its lease to be requeued. Nothing has
    fired yet, so a drain may cancel this at any point.
    """
    await clock.wait_until(due_ms)
    START_STEP.labels("wake").observe(max(0.0, await clock.earliest_ms() - due_ms) / 1000)
    delay = 0.02
    while True:
        try:
            asked = time.perf_counter()
            verdict = await due_set.start(entry, overlap, await clock.now_ms(), owner, member)
            START_STEP.labels("verdict").observe(time.perf_counter() - asked)
            break
        except TRANSIENT as exc:
            _start_retrying(entry, "start", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)
    if verdict.replaces is not None:
        # A retried start whose first call took effect reads "ok": the old run then keeps
        # running to its own end, as if its abort flag had been lost.
        await until_done(lambda: due_set.flag_replaced(verdict.replaces or "",
                                                       "replaced by a newer run"),
                         lambda exc, delay: _start_retrying(entry, "flag_replaced", exc, delay))
    return verdict


def lost_lease(run_id: str, job_id: str, attempt: int) -> None:
    """start_run.lua answered "lost": this executor held the attempt past its lease (cut off
    from Redis, or frozen), and the sweep or another executor has it now. Nothing is sent or
    completed: whoever holds it records it."""
    log.warning("attempt's lease lost before it started; left to its new holder",
                extra={"run_id": run_id, "job_id": job_id, "attempt": attempt})


def _start_retrying(entry: Entry, step: str, exc: BaseException, delay: float) -> None:
    START_RETRIES.labels(step).inc()
    log.warning("start of an attempt failed, retrying",
                extra={"job_id": entry.job_id, "runkey": entry.runkey, "step": step,
                       "retry_in": delay, "error": repr(exc)})


async def until_done(attempt: Callable[[], Awaitable[Any]], on_retry: Callable[[BaseException,
                     float], None]) -> None:
    """Retry a write that records an attempt that ran (its status, its completion) until it
    succeeds: letting the error through would let the lease lapse and the attempt run again.
    Both writes are idempotent (statuses only move forward; completing twice is completing)."""
    delay = 0.05
    while True:
        try:
            await attempt()
            return
        except TRANSIENT as exc:
            on_retry(exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def sleep_until(event: asyncio.Event, seconds: float) -> bool:
    """Sleep unless `event` is set; True once it is."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)
    return event.is_set()


class Leases:
    """The leases one executor holds, renewed until it stops; expired ones of any executor are
    requeued (their executor died), so a run outlives the crash of whoever ran it."""

    def __init__(self, due_set: DueSet, clock: ReferenceClock, owner: str, lease_ms: int) -> None:
        self.due_set, self.clock, self.owner, self.lease_ms = due_set, clock, owner, lease_ms
        self.held: dict[str, Entry] = {}

    def hold(self, entry: Entry) -> None:
        self.held[entry.runkey] = entry

    def release(self, entry: Entry) -> None:
        # A newer version's request for the same attempt may have taken the lease over.
        if self.held.get(entry.runkey) is entry:
            del self.held[entry.runkey]

    async def maintain(self, until: asyncio.Event) -> None:
        """Renew and sweep until `until` (the intake drained): an attempt still running during a
        drain would otherwise lose its lease and run again elsewhere."""
        while not await sleep_until(until, min(1.0, self.lease_ms / 3000)):
            try:
                now = await self.clock.now_ms()
                if self.held:
                    await self.due_set.renew(self.owner, list(self.held.values()),
                                             now + self.lease_ms)
                for shard in range(self.due_set.shards):
                    n = await self.due_set.requeue_expired_leases(shard, now)
                    if n:
                        log.warning("expired leases requeued", extra={"shard": shard, "count": n})
            except (RedisError, OSError) as exc:
                log.warning("lease maintenance failed", extra={"error": repr(exc)})
