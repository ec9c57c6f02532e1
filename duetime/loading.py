"""Turning a job into due-set entries: shared by the writer (right away) and the watcher (each poll)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from duetime import catchup, schedule
from duetime.due_set import Entry
from duetime.postgres import Conn
from duetime.run_ids import run_id_for
from duetime.sql import load_queries
from duetime.timeutil import to_ms
from schemas.api import JobSpec

QUERIES = load_queries("duetime", "loading.sql")


def run_template(job_id: str, tenant: str, version: int, spec: JobSpec) -> dict[str, Any]:
    """What the dispatcher needs to build a run request without asking Postgres."""
    return {
        "job_id": job_id,
        "tenant": tenant,
        "version": version,
        "target": spec.target.model_dump(mode="json"),
        "retry": spec.retry.model_dump(mode="json"),
        "priority": spec.priority,
        "overlap": spec.overlap,
        "one_shot": spec.one_shot,
        "catchup": spec.catchup,
        "catchup_window_seconds": spec.catchup_window_seconds,
    }


def entries_for(job_id: str, version: int, spec: JobSpec, instants: list[datetime],
                nexts: Mapping[int, int] | None = None) -> list[Entry]:
    """Due-set entries for `instants`; `nexts` (a Plan's next_ms) lets catch-up tell the
    newest firing of an outage."""
    nexts = nexts or {}
    return [Entry(job_id, version, to_ms(t), 1, spec.priority, next_ms=nexts.get(to_ms(t)))
            for t in instants]


@dataclass(frozen=True)
class Plan(schedule.Window):
    """A window with catch-up applied by outage, and each fired instant's next instant (ms)."""

    next_ms: dict[int, int] = field(default_factory=dict)


def plan(spec: JobSpec, created_at: datetime, first: datetime | None, now: datetime,
         horizon: datetime, planned: int = 0, outages: Iterable[catchup.Outage] = ()) -> Plan:
    """Firings from `first` up to `horizon`, never more than max_runs over the job's life.

    A recurring firing is missed only if it fell inside one of `outages` (the system was down);
    then the job's catch-up policy decides (duetime/catchup.py) and the rest is `skipped`. One
    that is merely in the past (`now`: the loader was busy or the command late) still fires.
    """
    if first is None:
        return Plan(fire=[], skipped=[], cursor=None)
    remaining = None if spec.max_runs is None else spec.max_runs - planned
    if remaining is not None and remaining <= 0:
        # At the cap, the cursor stays: a planned firing that is skipped for good (catch-up,
        # overlap) frees its slot, and the watcher then plans the next one from here
        # (watcher/queries.sql claim_due_jobs passes over jobs at their cap meanwhile).
        return Plan(fire=[], skipped=[], cursor=first)
    limit = 1000 if remaining is None else min(1000, remaining)
    # Judged as of `first`, plan_window finds nothing missed: catch-up is applied below.
    return _by_outage(spec, schedule.plan_window(spec, created_at, first, horizon, first, limit),
                      list(outages))


def _by_outage(spec: JobSpec, window: schedule.Window, outages: list[catchup.Outage]) -> Plan:
    fire: list[datetime] = []
    skipped: list[datetime] = []
    nexts: dict[int, int] = {}
    # Each firing with the one after it (the cursor after the last); none when nothing fires.
    following = [*window.fire[1:], window.cursor][:len(window.fire)]
    for t, after in zip(window.fire, following, strict=True):
        t_ms, next_ms = to_ms(t), None if after is None else to_ms(after)
        outage = None if spec.one_shot else catchup.outage_of(t_ms, outages)
        if outage is None or catchup.decide(spec.catchup, spec.catchup_window_seconds, t_ms,
                                            next_ms, outage) == "fire":
            fire.append(t)
            if next_ms is not None:
                nexts[t_ms] = next_ms
        else:
            skipped.append(t)
    return Plan(fire=fire, skipped=skipped + window.skipped, cursor=window.cursor, next_ms=nexts)


async def record_skipped(conn: Conn, skipped: Sequence[tuple[str, str, datetime]]) -> None:
    """Record firings (job_id, tenant, instant) that plan() skipped, one statement for all."""
    if skipped:
        await conn.execute(QUERIES["record_skipped"],
                           [run_id_for(job_id, to_ms(at)) for job_id, _, at in skipped],
                           [job_id for job_id, _, _ in skipped],
                           [tenant for _, tenant, _ in skipped], [at for _, _, at in skipped])
