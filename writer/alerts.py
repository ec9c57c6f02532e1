"""Alerts of tenants' jobs (ADR 0033): found while statuses are applied, published from an outbox.

The writer applies every run status and knows each job's previous outcome, so it is where a
failure, a late start or a recovery is noticed: `detect` reads the rows the status batch
changed, `record` inserts the alerts in that batch's transaction (an alert exists exactly when
its status does). `publish` moves them from the `alerts` table to `duetime.alerts` and marks
them; a crash in between publishes them again (at least once; `alert_id` is the receivers'
idempotency key). Nothing here is on the firing path: the executors fire without waiting for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter
from pydantic import ValidationError

from duetime import kafka
from duetime.due_set import REDELIVERY_WINDOW_S, DueSet
from duetime.lifecycle import Lifecycle
from duetime.postgres import Conn
from duetime.run_ids import run_id_for
from duetime.timeutil import to_ms, utcnow
from schemas.api import NotificationTarget, storable_text
from schemas.events import AlertKind, AlertRaised, RunStatusChanged
from schemas.redaction import redact_text
from schemas.topics import ALERTS

log = logging.getLogger(__name__)
RAISED = Counter("duetime_writer_alerts_total", "Alerts recorded", ["kind"])
PUBLISHED = Counter("duetime_writer_alerts_published_total", "Alerts put on duetime.alerts")
FAILED_STATUSES = frozenset({"failed", "timed_out"})
# Final statuses of firings made: what jobs.last_run_status holds (a final `skipped` is none).
MADE_STATUSES = FAILED_STATUSES | {"succeeded", "cancelled"}
PUBLISH_BATCH = 500
# Runs waiting longer than this after they were due are the operator's alerts (firing stopped
# for everyone: DuetimeFiringLate), not news for each tenant; the done flags live as long.
WAITING_LOOKBACK = timedelta(seconds=REDELIVERY_WINDOW_S)
WAITING_BATCH = 500


def alert_id(kind: str, ref: str) -> str:
    """The same alert for the same (kind, run or command), however often its status is replayed."""
    return "al_" + hashlib.sha256(f"{kind}:{ref}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Alert:
    tenant: str
    job_id: str | None
    run_id: str | None
    kind: AlertKind
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)
    ref: str = ""  # what the alert is about when it is not a run (a dead letter's position)

    @property
    def alert_id(self) -> str:
        return alert_id(self.kind, self.ref or self.run_id or "")


def dead_letter(tenant: str, job_id: str | None, topic: str, partition: int, offset: int,
                reason: str, at: datetime) -> Alert:
    """A message of `tenant`'s the writer dead-lettered (a poison command or status): the same
    alert however often the message is consumed again, since it names its position."""
    return Alert(tenant, job_id, None, "dlq", at,
                 {"topic": topic, "reason": storable_text(redact_text(reason))[:500]},
                 ref=f"{topic}/{partition}/{offset}")


def _run_detail(event: RunStatusChanged) -> dict[str, Any]:
    detail = {"status": event.status, "attempt": event.attempt,
              "scheduled_at": event.scheduled_at.isoformat(), "error": event.error,
              "http_status": event.http_status, "lateness_ms": event.lateness_ms}
    return {k: v for k, v in detail.items() if v is not None}


def _job_alerts(job: Mapping[str, Any], runs: Sequence[RunStatusChanged]) -> list[Alert]:
    """One job's alerts from its runs that reached their final status, oldest first."""
    found: list[Alert] = []
    previous, previous_at = job["previous_status"], job["previous_at"]
    late_after = job["late_after_seconds"]
    for ev in runs:
        # A run older than the job's last run ended late (a slow call): it is no recovery, and
        # the last run stays the later one.
        newer = previous_at is None or ev.scheduled_at >= previous_at
        at = ev.finished_at or ev.at

        def alert(kind: AlertKind, ev: RunStatusChanged = ev, at: datetime = at,
                  **extra: Any) -> Alert:
            return Alert(ev.tenant, ev.job_id, ev.run_id, kind, at, {**_run_detail(ev), **extra})

        if late_after is not None and (ev.lateness_ms or 0) > late_after * 1000:
            found.append(alert("late", at=ev.started_at or at, late_after_seconds=late_after))
        if ev.status in FAILED_STATUSES:
            found.append(alert("failure"))
        elif ev.status == "succeeded" and newer and previous in FAILED_STATUSES:
            found.append(alert("recovered", previous_status=previous))
        if newer:  # as jobs.last_run_status will hold it (a cancel included)
            previous, previous_at = ev.status, ev.scheduled_at
    return found


def detect(jobs: Iterable[Mapping[str, Any]], changed: Iterable[Mapping[str, Any]],
           events: Mapping[str, RunStatusChanged]) -> list[Alert]:
    """The alerts of a status batch.

    `jobs`: rows of record_finished_runs (each job's outcome before the batch, its
    late_after_seconds); `changed`: rows upsert_runs changed; `events`: the batch by run id.
    Only a run's final status counts: a failure that is retried is not yet the run's last word.
    """
    final: dict[str, list[RunStatusChanged]] = {}
    for row in changed:
        ev = events.get(row["run_id"])
        if ev is not None and row["final"] and row["status"] in MADE_STATUSES:
            final.setdefault(row["job_id"], []).append(ev)
    found: list[Alert] = []
    for job in jobs:
        runs = sorted(final.get(job["job_id"], []), key=lambda e: e.scheduled_at)
        found += _job_alerts(job, runs)
    return found


async def record(conn: Conn, queries: dict[str, str], alerts: Sequence[Alert]) -> int:
    """Insert `alerts` (inside the caller's transaction); one already there is left as it is.
    Returns how many were new."""
    if not alerts:
        return 0
    inserted = await conn.fetch(queries["insert_alerts"], [a.alert_id for a in alerts],
                                [a.tenant for a in alerts], [a.job_id for a in alerts],
                                [a.run_id for a in alerts], [a.kind for a in alerts],
                                [a.at for a in alerts],
                                [a.detail for a in alerts])
    for row in inserted:
        RAISED.labels(row["kind"]).inc()
    return len(inserted)


async def raise_waiting(pool: asyncpg.Pool[Any], due_set: DueSet, queries: dict[str, str],
                        now: datetime, lookback: timedelta = WAITING_LOOKBACK) -> int:
    """`late` alerts of first attempts still not started `late_after_seconds` after they were
    due: queued for an executor that has not taken them, or never queued (the dispatching path
    is down or behind). Raised while the run waits — the tenant hears of it when it matters —
    under the id the run's late start would give it, so a run that finally starts late raises
    nothing more. A run an executor holds or finished (Redis) is not waiting, whatever statuses
    the writers have not applied yet. Returns how many were raised."""
    rows = await pool.fetch(queries["late_waiting"], now, lookback, WAITING_BATCH)
    if not rows:
        return 0
    run_ids = [run_id_for(r["job_id"], to_ms(r["scheduled_at"])) for r in rows]
    taken = await due_set.taken([(r["job_id"], f"{run_id}:1")
                                 for r, run_id in zip(rows, run_ids, strict=True)])
    found = [Alert(r["tenant"], r["job_id"], run_id, "late", now,
                   {"waiting": r["waiting"], "attempt": 1,
                    "scheduled_at": r["scheduled_at"].isoformat(),
                    "late_after_seconds": r["late_after_seconds"]})
             for r, run_id, held in zip(rows, run_ids, taken, strict=True) if not held]
    async with pool.acquire() as conn:
        return await record(conn, queries, found)


async def keep_raising_waiting(lifecycle: Lifecycle, pool: asyncpg.Pool[Any], due_set: DueSet,
                               queries: dict[str, str],
                               transient: Callable[[BaseException], bool],
                               interval: float = 2.0) -> None:
    """Look for runs waiting past their `late_after_seconds` every `interval` until stopped;
    several writers doing it raise each alert once (its id)."""
    while not lifecycle.stop.is_set():
        try:
            await raise_waiting(pool, due_set, queries, utcnow())
        except Exception as exc:
            if not transient(exc):
                raise
            log.warning("waiting runs not checked", extra={"error": repr(exc)[:300]})
        if await lifecycle.sleep(interval):
            return


def message(row: Mapping[str, Any]) -> AlertRaised:
    """The Kafka message of an outbox row; a webhook that no longer validates is left out
    (its job was stored before the rules it breaks): the alert is still listed."""
    webhook = None
    if row["webhook"] is not None:
        try:
            webhook = NotificationTarget.model_validate(row["webhook"])
        except ValidationError as exc:
            log.warning("alert webhook invalid; not sent",
                        extra={"job_id": row["job_id"], "error": str(exc)[:300]})
    return AlertRaised(alert_id=row["alert_id"], tenant=row["tenant"], job_id=row["job_id"],
                       run_id=row["run_id"], kind=row["kind"], at=row["at"],
                       detail=row["detail"], webhook=webhook)


async def publish(pool: asyncpg.Pool[Any], producer: AIOKafkaProducer,
                  queries: dict[str, str], topic: str = ALERTS) -> int:
    """Put the next alerts of the outbox on `topic` and mark them; how many."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(queries["pending_alerts"], PUBLISH_BATCH)
        if not rows:
            return 0
        futures = [await producer.send(topic, kafka.encode(message(row)),
                                       key=(row["job_id"] or "").encode()) for row in rows]
        await asyncio.gather(*futures)
        await conn.execute(queries["mark_alerts_published"], [r["alert_id"] for r in rows])
    PUBLISHED.inc(len(rows))
    return len(rows)


async def keep_publishing(lifecycle: Lifecycle, pool: asyncpg.Pool[Any],
                          producer: AIOKafkaProducer, queries: dict[str, str],
                          transient: Callable[[BaseException], bool],
                          interval: float = 0.5) -> None:
    """Publish until stopped; a full batch is followed at once by the next."""
    while not lifecycle.stop.is_set():
        full = False
        try:
            full = await publish(pool, producer, queries) == PUBLISH_BATCH
        except Exception as exc:
            if not transient(exc):
                raise
            log.warning("alerts not published yet", extra={"error": repr(exc)[:300]})
        if not full and await lifecycle.sleep(interval):
            return
