"""Turns popped due-set entries into run requests (pure; no I/O)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from duetime.catchup import Outage, Verdict, decide, outage_of
from duetime.due_set import SCHEDULED, Popped, lost_state
from duetime.timeutil import from_ms
from schemas.event_json import status_json
from schemas.events import RunStatusChanged


def run_request(popped: Popped, now: datetime) -> dict[str, Any]:
    """The values of a RunRequested (schemas/events.py); `run_request_json` encodes them.

    Plain values, not the model: the template was built from a validated JobSpec by the
    writer or watcher, and validating it again per firing was CPU on the hot path (ADR 0024).
    """
    entry, spec = popped.entry, popped.spec
    assert entry is not None and spec is not None
    return {
        "run_id": entry.run_id,
        "job_id": entry.job_id,
        "tenant": spec["tenant"],
        "job_version": entry.version,
        "scheduled_at": from_ms(entry.scheduled_ms),
        "due_at": from_ms(popped.due_ms),
        "attempt": entry.attempt,
        "priority": entry.priority,
        "target": spec["target"],
        "retry": spec["retry"],
        "overlap": spec.get("overlap", "allow"),
        "member": popped.member,
        "dispatched_at": now,
    }


def queued_status(req: dict[str, Any]) -> bytes:
    """The `queued` status of a run request (`run_request`'s values), as JSON."""
    return status_json(run_id=req["run_id"], job_id=req["job_id"], tenant=req["tenant"],
                       scheduled_at=req["scheduled_at"], attempt=req["attempt"],
                       status="queued", at=req["dispatched_at"],
                       queued_at=req["dispatched_at"])


def skipped_status(popped: Popped, reason: str, now: datetime,
                   final: bool = True) -> RunStatusChanged | None:
    """A firing not made (e.g. the job was paused), recorded so nothing disappears silently.

    Not `final` when the run may still fire (a paused one-shot job fires on resume): a later
    status of the same attempt then overtakes it.
    """
    entry, spec = popped.entry, popped.spec
    if entry is None or spec is None:
        return None
    return RunStatusChanged(
        run_id=entry.run_id, job_id=entry.job_id, tenant=spec["tenant"],
        scheduled_at=from_ms(entry.scheduled_ms), attempt=entry.attempt, status="skipped",
        at=now, finished_at=now, reason=reason, final=final,
    )


def lost_status(popped: Popped, now: datetime) -> RunStatusChanged | None:
    """The end of a run whose executor was lost (its lease lapsed) and whose job was cancelled
    or completed before the attempt could run again (pop_due's "lost-<state>" verdict): the
    run may be recorded `queued` or `running`, and nothing ends it otherwise. Whether the call
    was made is not known, so the error says so rather than claim an outcome."""
    entry, state = popped.entry, lost_state(popped.verdict)
    if entry is None or state is None:
        return None
    # A KeyError when no tenant was kept (a job completed and forgotten): logged by the caller.
    return RunStatusChanged(
        run_id=entry.run_id, job_id=entry.job_id, tenant=(popped.spec or {})["tenant"],
        scheduled_at=from_ms(entry.scheduled_ms), attempt=entry.attempt, status="cancelled",
        at=now, finished_at=now, reason=f"job {state}",
        error=(f"the executor running attempt {entry.attempt} was lost (its lease expired) and "
               f"the job was {state} before the attempt could run again: whether the call was "
               "made is unknown"),
    )


def dropped_status(popped: Popped, now: datetime) -> RunStatusChanged | None:
    """What to record of an entry dropped at the pop, if anything (see `_dropped` in
    dispatcher/service.py)."""
    if popped.verdict == "paused":
        # Not final: it is not a firing made (max_runs), and a one-shot job fires it on resume.
        return skipped_status(popped, "paused", now, final=False)
    return lost_status(popped, now)


def _verdict(p: Popped, outages: list[Outage]) -> Verdict:
    e, spec = p.entry, p.spec or {}
    if e is None or e.flag != SCHEDULED or e.attempt != 1 or spec.get("one_shot", False):
        return "fire"  # run-now entries, retries and one-shot jobs always fire
    outage = outage_of(e.scheduled_ms, outages)
    if outage is None:
        return "fire"  # on time, or late because the system was busy: never missed
    return decide(str(spec.get("catchup", "latest")), int(spec.get("catchup_window_seconds", 3600)),
                  e.scheduled_ms, p.next_ms, outage)


def apply_catchup(popped: list[Popped], outages: list[Outage]) -> tuple[list[Popped], list[Popped]]:
    """Split runnable entries into (to fire, to skip) by each job's catch-up policy.

    An entry was missed only if its instant fell inside an outage of its shard (a gap in the
    dispatching path's heartbeat), however late it is popped (ADR 0011). Recurring jobs then
    follow their policy (duetime/catchup.py): `latest` fires only the job's newest firing of
    that outage, `none` none, `all` those inside the catch-up window before the outage ended.
    """
    fire: list[Popped] = []
    skip: list[Popped] = []
    for p in popped:
        (fire if _verdict(p, outages) == "fire" else skip).append(p)
    return fire, skip
