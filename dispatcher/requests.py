"""Turns popped due-set entries into run requests (pure; no I/O)."""

from __future__ import annotations

from datetime import datetime

from duetime.due_set import Popped
from duetime.timeutil import from_ms
from schemas.events import RunRequested, RunStatusChanged


def run_request(popped: Popped, now: datetime) -> RunRequested:
    entry, spec = popped.entry, popped.spec
    assert entry is not None and spec is not None
    return RunRequested(
        run_id=entry.run_id,
        job_id=entry.job_id,
        tenant=spec["tenant"],
        job_version=entry.version,
        scheduled_at=from_ms(entry.scheduled_ms),
        due_at=from_ms(popped.due_ms),
        attempt=entry.attempt,
        priority=entry.priority,
        target=spec["target"],
        retry=spec["retry"],
        overlap=spec.get("overlap", "allow"),
        member=popped.member,
        dispatched_at=now,
    )


def queued_status(req: RunRequested) -> RunStatusChanged:
    return RunStatusChanged(
        run_id=req.run_id, job_id=req.job_id, tenant=req.tenant, scheduled_at=req.scheduled_at,
        attempt=req.attempt, status="queued", at=req.dispatched_at, queued_at=req.dispatched_at,
    )


def skipped_status(popped: Popped, reason: str, now: datetime) -> RunStatusChanged | None:
    """A firing not made (e.g. the job was paused), recorded so nothing disappears silently."""
    entry, spec = popped.entry, popped.spec
    if entry is None or spec is None:
        return None
    return RunStatusChanged(
        run_id=entry.run_id, job_id=entry.job_id, tenant=spec["tenant"],
        scheduled_at=from_ms(entry.scheduled_ms), attempt=entry.attempt, status="skipped",
        at=now, finished_at=now, reason=reason,
    )
