"""A pure reference model of duetime's firing contract (README "Guarantees", API.md, rules 4-6).

Given one job's history — its spec, when it was created, and every accepted command with the
instants it was sent, acknowledged (202) and applied (the writer's `job.*` event) — and the
windows in which the nemesis had a firing-path service down, the model says which firings
**must** happen (each as a slot: a scheduled instant or a run id, and the paths it may reach),
which **may** happen (the documented tolerances below), and by omission which **must not**.
The checker then matches what the sink received against it.

Tolerances, each one written in docs/guarantees.md:
- A command takes effect when the writer applies it. A firing scheduled between the moment the
  command was sent and `EDIT_SLACK_MS` after it was applied may follow either the old or the new
  job (the dispatcher hands runs over ~100 ms before they are due).
- A recurring firing scheduled while a firing-path service was down (or within
  `RECOVERY_MS` after it came back) may be skipped by the catch-up policy; one-shot jobs and
  run-now requests fire regardless.
- Duplicates are counted, not failed: at-least-once allows a repeat when an executor dies
  mid-call; every repeat must carry the same Idempotency-Key.
- A cancel stops every firing not started when it takes effect, however long ago it was due
  (a backlog under load): a required firing may be missing if its run is recorded
  `cancelled`, judged after the cancel was sent (ADR 0036). Edits and pauses do not: an instant
  due before one was issued still fires under the version it was owed by.
- A call made by an executor that was then killed before it reported is known to nobody; its
  attempt runs again once the lease lapses (`LEASE_MS`) — unless a cancel was sent before then:
  the run then ends `cancelled` (the redelivered request judged after the cancel, or the
  sweep's entry dropped at the pop: ADR 0036, amended), though the sink answered 200
  (`lost_with_executor`). It is `queued` or `running` only until then (a history that ends
  before the sweep and the next pop).
- A call that reached the sink after its job's cancel was sent may have been aborted before
  its answer was read, and is then `cancelled` though the sink answered (`aborted_by_cancel`;
  seen when the test process's own loop took the request late).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

EDIT_SLACK_MS = 50
# A firing may start this late under load (GC, a burst, two cores shared with the harness), so a
# command sent up to this long after a firing's instant may still win over it.
LATE_MS = 500
RECOVERY_MS = 3000
# The harness's retry policy retries within this long after a failure (1 s, then 1 s more:
# the least backoff the API allows, DUETIME_MIN_RETRY_DELAY_SECONDS).
RETRY_SPAN_MS = 3500
CLOCK_SLACK_MS = 1  # ms rounding between datetimes, floats and headers
# The executor's lease (Settings.lease_ms): a killed executor's attempts are judged again this
# long after its last renewal at the earliest, or once the restarted executor runs.
LEASE_MS = 10_000
# A kill lands this long after the nemesis noted its start at the latest (stack.sh's SIGKILL).
KILL_SLACK_MS = 2000

CommandKind = Literal["create", "cancel", "pause", "resume", "patch", "run"]
ONE_SHOT = frozenset({"once", "delay", "now"})


@dataclass
class Command:
    kind: CommandKind
    sent_ms: int
    acked_ms: int
    applied_ms: int | None = None  # None until the writer's event was seen
    path: str | None = None  # patch: the sink path the job moves to
    run_id: str | None = None  # run: the run id the 202 named


@dataclass
class JobHistory:
    key: str
    job_id: str
    schedule: dict[str, Any]
    path: str
    created_ms: int
    commands: list[Command] = field(default_factory=list)  # after the create, in order
    applied_ms: int | None = None  # when the writer applied the create
    fail_first: bool = False  # the sink answers 500 to attempt 1: every run needs a retry

    @property
    def one_shot(self) -> bool:
        return self.schedule["type"] in ONE_SHOT

    def paths(self) -> frozenset[str]:
        return frozenset([self.path, *(c.path for c in self.commands if c.path)])


@dataclass(frozen=True)
class Slot:
    """A firing the sink may see: by run id, or by scheduled instant within [lo, hi]."""

    lo_ms: int
    hi_ms: int
    paths: frozenset[str]
    required: bool
    run_id: str | None = None
    # A retry may go to a target edited in after the first attempt (an edit during the backoff
    # continues the run with the new version, ADR 0010).
    retry_paths: frozenset[str] = frozenset()

    def matches(self, hit: Hit) -> bool:
        if hit.path not in self.paths and not (hit.attempt > 1 and hit.path in self.retry_paths):
            return False
        if self.run_id is not None:
            return hit.run_id == self.run_id
        return self.lo_ms - CLOCK_SLACK_MS <= hit.scheduled_ms <= self.hi_ms + CLOCK_SLACK_MS


@dataclass(frozen=True)
class Hit:
    """One request the sink received, as the executor labelled it."""

    path: str
    job_id: str
    run_id: str
    idempotency_key: str
    scheduled_ms: int
    attempt: int
    received_ms: int

    @classmethod
    def from_headers(cls, path: str, headers: dict[str, str], received_s: float) -> Hit:
        h = {k.lower(): v for k, v in headers.items()}
        scheduled = datetime.fromisoformat(h["x-duetime-scheduled-at"].replace("Z", "+00:00"))
        return cls(path=path, job_id=h["x-duetime-job-id"], run_id=h["x-duetime-run-id"],
                   idempotency_key=h.get("idempotency-key", ""),
                   scheduled_ms=round(scheduled.timestamp() * 1000),
                   attempt=int(h["x-duetime-attempt"]), received_ms=round(received_s * 1000))


@dataclass
class Expectation:
    slots: list[Slot]
    final_states: frozenset[str]
    # Required slots whose retry must also be seen: no command and no outage could stop it.
    retried: set[Slot] = field(default_factory=set)


def _zone(cmd: Command) -> tuple[int, int]:
    end = cmd.applied_ms + EDIT_SLACK_MS if cmd.applied_ms is not None else 2**62
    return cmd.sent_ms - LATE_MS, end


def _in_any(t: int, windows: list[tuple[int, int]]) -> bool:
    return any(lo <= t <= hi for lo, hi in windows)


def _state_at(job: JobHistory, t: int) -> tuple[str, str]:
    """The job's state and path for a firing at `t`, from the commands applied before it."""
    state, path = "active", job.path
    for cmd in job.commands:
        if cmd.applied_ms is None or cmd.applied_ms > t:
            break
        if cmd.kind == "cancel":
            state = "cancelled"
        elif cmd.kind == "pause" and state == "active":
            state = "paused"
        elif cmd.kind == "resume" and state == "paused":
            state = "active"
        elif cmd.kind == "patch" and cmd.path:
            path = cmd.path
    return state, path


def one_shot_instant(job: JobHistory) -> int:
    sched = job.schedule
    if sched["type"] == "once":
        at = datetime.fromisoformat(sched["at"].replace("Z", "+00:00"))
        return round(at.timestamp() * 1000)
    if sched["type"] == "delay":
        return job.created_ms + round(float(sched["seconds"]) * 1000)
    return job.created_ms


def recurring_instants(job: JobHistory, until_ms: int) -> list[int]:
    """The schedule's instants from creation to `until_ms`, computed independently of
    duetime.schedule: interval = created + k·N (k ≥ 1); `*/k * * * * *` in UTC = every
    whole second divisible by k."""
    sched = job.schedule
    out: list[int] = []
    if sched["type"] == "interval":
        step = int(sched["every_seconds"]) * 1000
        t = job.created_ms + step
        while t <= until_ms:
            out.append(t)
            t += step
        return out
    every = int(sched["expression"].split()[0].removeprefix("*/") or 1) * 1000
    t = (job.created_ms // every) * every
    if t < job.created_ms:
        t += every
    while t <= until_ms:
        out.append(t)
        t += every
    return out


def _overlaps(span: tuple[int, int], windows: list[tuple[int, int]]) -> bool:
    return any(lo <= span[1] and span[0] <= hi for lo, hi in windows)


@dataclass
class _Windows:
    """The instants around which the model cannot say what happens."""

    zones: list[tuple[int, int]]  # a command in flight: sent .. applied + slack
    stoppers: list[tuple[int, int]]  # the zones of commands that stop an owed firing
    outage: list[tuple[int, int]]  # a firing-path service down, plus its recovery
    # Pauses: a one-shot firing owed but not started yet when one takes effect (e.g. its
    # executor is down) waits for the resume (ADR 0010).
    pauses: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def of(cls, job: JobHistory, faults: list[tuple[int, int]]) -> _Windows:
        # Pause and resume do not stop an owed firing (a one-shot or a run-now fires
        # regardless); a cancel does, and so does an edit that supersedes it.
        return cls([_zone(c) for c in job.commands if c.kind != "run"],
                   [_zone(c) for c in job.commands if c.kind in ("cancel", "patch")],
                   [(lo - EDIT_SLACK_MS, hi + RECOVERY_MS) for lo, hi in faults],
                   [_zone(c) for c in job.commands if c.kind == "pause"])

    def owed_until(self, t: int) -> int:
        """When an owed firing due at `t` happens at the latest: at once, or when the outage
        around it ends."""
        return max([t, *(hi for lo, hi in self.outage if lo <= t <= hi)])


def _resumed_at(job: JobHistory, at: int) -> int | None:
    """A one-shot job paused at its instant fires when a later resume is applied: when."""
    for cmd in job.commands:
        if cmd.applied_ms is None or cmd.applied_ms <= at:
            continue
        if cmd.kind == "cancel":
            return None
        if cmd.kind == "resume":
            return cmd.applied_ms
    return None


def _one_shot_at(job: JobHistory, t: int) -> int | None:
    """When a one-shot job due at `t` is owed: its instant (or its creation, if that was
    later), or the resume after a pause that spanned it; None if it is never owed."""
    at = max(t, job.applied_ms or job.created_ms)
    if _state_at(job, at)[0] != "paused":
        return at
    return _resumed_at(job, at)


def _scheduled(job: JobHistory, w: _Windows, t: int) -> Slot | None:
    everywhere = job.paths()
    # A one-shot job due before the writer stored it fires at once: judge it then; one paused
    # across its instant fires on resume (ADR 0010): judge it then.
    # Nothing fires before the writer stored the job (it may have been down): judge it then.
    found = _one_shot_at(job, t) if job.one_shot else max(t, job.applied_ms or job.created_ms)
    if found is None:
        at = max(t, job.applied_ms or job.created_ms)
        return Slot(t, t, everywhere, required=False) if _in_any(at, w.zones) else None
    at = found
    if _in_any(at, w.zones) or (job.one_shot and _overlaps((at, w.owed_until(at)),
                                                            [*w.stoppers, *w.pauses])):
        return Slot(t, t, everywhere, required=False)
    state, path = _state_at(job, at)
    if state != "active":
        return None
    if job.one_shot:
        # Fired late after an outage, a one-shot job runs the spec current at dispatch.
        paths = everywhere if _in_any(at, w.outage) else frozenset([path])
        return Slot(t, t, paths, required=True, retry_paths=everywhere)
    if _in_any(t, w.outage) or t <= job.created_ms:
        # In an outage (Redis losing its claims among them) the old version's firing, already
        # handed over, may run beside the new one's, under the same run id; an instant in the
        # millisecond the job was created may or may not be its first.
        return Slot(t, t, everywhere, required=False)
    return Slot(t, t, frozenset([path]), required=True, retry_paths=everywhere)


def expect(job: JobHistory, faults: list[tuple[int, int]], until_ms: int) -> Expectation:
    """Every firing of `job` the contract requires or tolerates up to `until_ms`."""
    w = _Windows.of(job, faults)
    instants = [one_shot_instant(job)] if job.one_shot else recurring_instants(job, until_ms)
    slots = [slot for t in instants if (slot := _scheduled(job, w, t)) is not None]
    for cmd in job.commands:
        if cmd.kind == "run" and cmd.run_id is not None:
            # Run-now fires even while paused, once the writer applied it (late if the writer was
            # down); only a cancel accepted before it ran stops it (an edit, pause or resume
            # since does not: it runs the current spec).
            ran_by = max(w.owed_until(cmd.acked_ms), cmd.applied_ms or cmd.acked_ms)
            span = (cmd.sent_ms, ran_by + EDIT_SLACK_MS)
            cancels = [_zone(c) for c in job.commands if c.kind == "cancel"]
            slots.append(Slot(cmd.acked_ms, cmd.acked_ms, job.paths(),
                              required=not _overlaps(span, cancels), run_id=cmd.run_id))
    retried: set[Slot] = set()
    if job.fail_first:
        retried = {s for s in slots if s.required
                   and not _overlaps((s.lo_ms, s.hi_ms + RETRY_SPAN_MS), [*w.zones, *w.outage])}
    return Expectation(slots, _final_states(job, w), retried)


def _final_state(job: JobHistory) -> str:
    kinds = [c.kind for c in job.commands if c.kind in ("cancel", "pause", "resume")]
    if "cancel" in kinds:
        return "cancelled"
    if job.one_shot:
        # Paused across its instant and never resumed: it did not fire, so it is not completed.
        return "completed" if _one_shot_at(job, one_shot_instant(job)) is not None else "paused"
    return "paused" if kinds and kinds[-1] == "pause" else "active"


def _final_states(job: JobHistory, w: _Windows) -> frozenset[str]:
    """The final state, or both when a pause raced the one-shot job's instant."""
    final = _final_state(job)
    if job.one_shot and final != "cancelled":
        at = max(one_shot_instant(job), job.applied_ms or job.created_ms)
        if _in_any(at, w.zones) or _overlaps((at, w.owed_until(at)), w.pauses):
            return frozenset({"completed", "paused"})
    return frozenset([final])


@dataclass
class Verdict:
    lost: list[Slot] = field(default_factory=list)  # must-fire, never received
    unexpected: list[Hit] = field(default_factory=list)  # must-not-fire, received
    early: list[Hit] = field(default_factory=list)  # received before its scheduled instant
    retry_missing: list[Slot] = field(default_factory=list)  # attempt 1 failed, no attempt 2
    wrong_key: list[Hit] = field(default_factory=list)  # Idempotency-Key is not the run id
    duplicates: int = 0  # the same attempt of a run received more than once
    cancelled_in_backlog: int = 0  # required, not started when a cancel took effect: excused

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unexpected or self.early or self.retry_missing
                    or self.wrong_key)


def check(job: JobHistory, expectation: Expectation, hits: list[Hit],
          cancelled: dict[int, int] | None = None) -> Verdict:
    """Match the sink's hits against the expectation. `cancelled`: the job's runs recorded
    as cancelled, scheduled ms -> when that was judged (ms)."""
    v = Verdict()
    sent = [c.sent_ms for c in job.commands if c.kind == "cancel"]
    stopped = {t for t, judged in (cancelled or {}).items() if sent and judged >= min(sent)}
    for hit in hits:
        if hit.received_ms < hit.scheduled_ms - CLOCK_SLACK_MS:
            v.early.append(hit)
        if hit.idempotency_key != hit.run_id:
            v.wrong_key.append(hit)
        if not any(s.matches(hit) for s in expectation.slots):
            v.unexpected.append(hit)
    counts = Counter((h.run_id, h.attempt) for h in hits)
    v.duplicates = sum(n - 1 for n in counts.values())
    for slot in expectation.slots:
        if not slot.required:
            continue
        matched = [h for h in hits if slot.matches(h)]
        if not matched and slot.run_id is None and any(
                slot.lo_ms - CLOCK_SLACK_MS <= t <= slot.hi_ms + CLOCK_SLACK_MS for t in stopped):
            v.cancelled_in_backlog += 1
        elif not matched:
            v.lost.append(slot)
        elif slot in expectation.retried and not any(h.attempt >= 2 for h in matched):
            v.retry_missing.append(slot)
    return v


def aborted_by_cancel(job: JobHistory, received_ms: int, status: str | None) -> bool:
    """Whether a run whose call reached the sink (at `received_ms`) may be recorded `cancelled`
    though the sink answered: a cancel sent before the call got there can abort it before its
    answer is read, and such a call is `cancelled` (ADR 0010, 0045). The sink's own answer
    time says nothing here: its loop may take the request after the executor gave up on it."""
    return status == "cancelled" and any(
        c.kind == "cancel" and c.sent_ms <= received_ms for c in job.commands)


def lost_with_executor(job: JobHistory, called_ms: int, status: str | None,
                       kills: list[tuple[int, int]]) -> bool:
    """Whether a run whose call the sink answered (at `called_ms`) may stay unrecorded: an
    executor kill (start, end: restarted) came before it could report, and the job's cancel
    was sent before the attempt was judged again (the lease lapsed, or the restarted executor
    took the redelivered request), so nothing may call again and nobody knows the outcome.
    Such a run ends `cancelled` once it is judged again (ADR 0036, amended); `queued` and
    `running` are accepted for a history that ends before the lease sweep and the next pop."""
    if status not in (None, "queued", "running", "cancelled"):
        return False
    cancels = [c.sent_ms for c in job.commands if c.kind == "cancel"]
    return any(start - LEASE_MS <= called_ms <= start + KILL_SLACK_MS
               and any(called_ms <= sent <= max(start + LEASE_MS, end) for sent in cancels)
               for start, end in kills)
