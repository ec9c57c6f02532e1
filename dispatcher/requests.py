"""Turns popped due-set entries into run requests (pure; no I/O)."""

from __future__ import annotations

from datetime import datetime

from duetime.due_set import SCHEDULED, Popped
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


def _missed(p: Popped, now_ms: int, grace_ms: int) -> bool:
    e, spec = p.entry, p.spec or {}
    return (e is not None and e.flag == SCHEDULED and e.attempt == 1
            and not spec.get("one_shot", False) and now_ms - p.due_ms > grace_ms)


def apply_catchup(popped: list[Popped], now_ms: int,
                  grace_ms: int) -> tuple[list[Popped], list[Popped]]:
    """Split runnable entries into (to fire, to skip) by each job's catch-up policy.

    An entry popped more than `grace_ms` after it was due was missed while dispatching was down.
    Recurring jobs then follow their policy: `latest` fires only the newest missed firing (of
    this pop), `none` fires none, `all` fires those inside the catch-up window. Run-now entries,
    retries and one-shot jobs always fire.
    """
    fire: list[Popped] = []
    skip: list[Popped] = []
    latest: dict[str, Popped] = {}
    for p in popped:
        if not _missed(p, now_ms, grace_ms):
            fire.append(p)
            continue
        spec = p.spec or {}
        policy = spec.get("catchup", "latest")
        window_ms = 1000 * int(spec.get("catchup_window_seconds", 3600))
        if policy == "all" and now_ms - p.due_ms <= window_ms:
            fire.append(p)
        elif policy == "latest" and p.entry is not None:
            older = latest.get(p.entry.job_id)
            if older is not None:
                skip.append(older)
            latest[p.entry.job_id] = p
        else:
            skip.append(p)
    return fire + list(latest.values()), skip
