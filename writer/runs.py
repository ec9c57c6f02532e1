"""Persists run status changes in batches; statuses only move forward."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from duetime import schedule
from duetime.postgres import Conn
from duetime.timeutil import utcnow
from schemas.api import JobSpec
from schemas.events import TERMINAL_STATUSES, RunStatusChanged
from writer import alerts

_RANK = {"queued": 2, "running": 4}


def rank(status: str, final: bool = True) -> int:
    """The order statuses of one attempt move in; the same as run_rank() in SQL.

    A `skipped` that is not final (a stale or paused firing: the run may still fire) ranks
    between queued and running, so the run's next real status overtakes it.
    """
    if status == "skipped" and not final:
        return 3
    return _RANK.get(status, 6)


def latest_per_run(events: Sequence[RunStatusChanged]) -> list[RunStatusChanged]:
    """One event per run: the most advanced (attempt, then status rank; first terminal wins)."""
    best: dict[str, RunStatusChanged] = {}
    for ev in events:
        cur = best.get(ev.run_id)
        if cur is None or (ev.attempt, rank(ev.status, ev.final)) > (cur.attempt,
                                                                      rank(cur.status, cur.final)):
            best[ev.run_id] = ev
    return list(best.values())


def _columns(events: Sequence[RunStatusChanged]) -> list[list[Any]]:
    now = utcnow()
    return [
        [e.run_id for e in events], [e.job_id for e in events], [e.tenant for e in events],
        [e.scheduled_at for e in events], [e.attempt for e in events],
        [e.status for e in events], [e.queued_at for e in events],
        [e.started_at for e in events], [e.finished_at for e in events],
        [e.at or now for e in events], [e.executor_id for e in events],
        [e.lateness_ms for e in events], [e.duration_ms for e in events],
        [e.http_status for e in events], [e.error for e in events],
        [e.reason for e in events], [e.response_excerpt for e in events],
        [e.final for e in events], [e.retry_at for e in events],
        [e.exit_code for e in events], [e.signal for e in events],
        [e.output_bytes for e in events], [e.output_truncated for e in events],
        [None if e.steps is None else orjson.dumps([step.model_dump() for step in e.steps]).decode()
         for e in events],
    ]


async def persist(conn: Conn, queries: dict[str, str],
                  events: Sequence[RunStatusChanged]) -> list[tuple[str, str, int]]:
    """Upsert the batch; returns (job_id, new state, version) of jobs whose runs finished."""
    batch = latest_per_run(events)
    if not batch:
        return []
    changed = await conn.fetch(queries["upsert_runs"], *_columns(batch))
    await _advance_next_runs(conn, queries, changed)
    ended = [row for row in changed if row["status"] in TERMINAL_STATUSES and row["final"]]
    finished = _finished_per_job(ended)
    if not finished:
        return []
    ids = list(finished)
    rows = await conn.fetch(
        queries["record_finished_runs"], ids, *([finished[j][k] for j in ids] for k in range(5)),
        [row["job_id"] for row in ended], [row["scheduled_at"] for row in ended],
        [row["status"] != "skipped" for row in ended],
    )
    # In this transaction: an alert exists exactly when the status behind it does (ADR 0033).
    await alerts.record(conn, queries, alerts.detect(rows, changed, {e.run_id: e for e in batch}))
    return [(r["job_id"], r["state"], r["version"]) for r in rows]


def _finished_per_job(ended: Sequence[asyncpg.Record]) -> dict[str, list[Any]]:
    """Per job with a run ended (a final terminal status): [made, failed, last run id, last
    status, last scheduled_at].

    Only firings made count toward run_count and max_runs; a final `skipped` (catch-up,
    overlap) only leaves the plan, which record_finished_runs works out against the job's
    plan_from. A `skipped` that is not final never ends a run: it may still fire (issue 6
    defect 8).
    """
    finished: dict[str, list[Any]] = {}
    for row in ended:
        agg = finished.setdefault(row["job_id"], [0, 0, None, None, None])
        if row["status"] == "skipped":
            continue
        agg[0] += 1
        agg[1] += row["status"] != "succeeded"
        at: datetime = row["scheduled_at"]
        if agg[4] is None or at >= agg[4]:
            agg[2], agg[3], agg[4] = row["run_id"], row["status"], at
    return finished


async def _advance_next_runs(conn: Conn, queries: dict[str, str],
                             changed: Sequence[asyncpg.Record]) -> None:
    """Move recurring jobs' next_run_at past every firing that got queued or further."""
    fired: dict[str, datetime] = {}
    for row in changed:
        if row["status"] != "skipped":
            at = row["scheduled_at"]
            fired[row["job_id"]] = max(at, fired.get(row["job_id"], at))
    if not fired:
        return
    rows = await conn.fetch(queries["recurring_schedules"], list(fired))
    ids, fired_at, nxt = [], [], []
    for row in rows:
        at = fired[row["job_id"]]
        if row["next_run_at"] is not None and row["next_run_at"] > at:
            continue
        spec = JobSpec.model_validate(row["spec"])
        ids.append(row["job_id"])
        fired_at.append(at)
        nxt.append(schedule.next_fire(spec, row["created_at"], at))
    if ids:
        await conn.execute(queries["advance_next_run"], ids, fired_at, nxt)
