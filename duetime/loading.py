"""Turning a job into due-set entries: shared by the writer (right away) and the watcher (each poll)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from duetime import schedule
from duetime.due_set import Entry
from duetime.timeutil import to_ms
from schemas.api import JobSpec


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


def entries_for(job_id: str, version: int, spec: JobSpec, instants: list[datetime]) -> list[Entry]:
    return [Entry(job_id, version, to_ms(t), 1, spec.priority) for t in instants]


def plan(spec: JobSpec, created_at: datetime, first: datetime | None, now: datetime,
         horizon: datetime, planned: int = 0) -> schedule.Window:
    """Firings from `first` up to `horizon`, never more than max_runs over the job's life."""
    if first is None:
        return schedule.Window(fire=[], skipped=[], cursor=None)
    remaining = None if spec.max_runs is None else spec.max_runs - planned
    if remaining is not None and remaining <= 0:
        return schedule.Window(fire=[], skipped=[], cursor=None)
    limit = 1000 if remaining is None else min(1000, remaining)
    window = schedule.plan_window(spec, created_at, first, horizon, now, limit)
    if remaining is not None and len(window.fire) >= remaining:
        return schedule.Window(fire=window.fire, skipped=window.skipped, cursor=None)
    return window
