"""One command run request, from claim to completion, through the due-set protocol (ADR 0031).

Claim (lease) → at the due instant `start` (stale, paused, cancelled, overlap) → run in the
sandbox, output streamed into the object store → final status (exit code, signal, output size)
→ `complete` (and the retry entry when another attempt is due). A cancel of the job or a run
that replaces this one kills the process tree and records `cancelled`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from aiokafka import ConsumerRecord
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from duetime import kafka
from duetime.attempts import (
    NOT_FIRED,
    NOT_STARTED,
    TRANSIENT,
    Leases,
    lost_lease,
    start_when_due,
    until_done,
)
from duetime.clock import ReferenceClock
from duetime.due_set import Claim, DueSet, Entry, Start
from duetime.objects import ObjectStore, output_key
from duetime.objects.keys import InvalidKey
from duetime.timeutil import from_ms, to_ms, utcnow
from executor.command.output import StoredOutput
from executor.command.sandbox import Outcome as Ended
from executor.command.sandbox import Sandbox
from executor.command.sources import source_files
from executor.command.spec import CommandSpec, Limits, SpecRefused
from executor.command.steps import UNLIMITED, StepsOutput, new_nonce, steps_argv
from executor.outcome import Outcome, backoff_seconds, should_retry
from schemas.api import CommandTarget, StepsTarget
from schemas.events import CommandRunRequested, DeadLetter, RunStatus, RunStatusChanged
from schemas.topics import RUNS_DLQ, RUNS_STATUS

log = logging.getLogger(__name__)
FINISHED = Counter("duetime_command_executor_runs_total", "Command attempts finished", ["status"])
SKIPPED = Counter("duetime_command_executor_claims_refused_total",
                  "Command run requests not run", ["reason"])
IN_FLIGHT = Gauge("duetime_command_executor_in_flight", "Command attempts running now")
WRITE_RETRIES = Counter("duetime_command_executor_write_retries_total",
                        "Writes recording a command attempt that failed and were retried",
                        ["write"])


@dataclass(frozen=True)
class Result:
    """How an attempt ended, as recorded on its final status."""

    status: RunStatus
    error: str | None = None
    reason: str | None = None
    retryable: bool = True
    exit_code: int | None = None
    signal: int | None = None
    output_bytes: int | None = None
    output_truncated: bool | None = None
    steps: list[dict[str, Any]] | None = None


def command_spec(target: CommandTarget | StepsTarget, nonce: str = "") -> CommandSpec:
    """What the sandbox runs: the argv, or the steps driver (whose output StepsOutput limits)."""
    steps = isinstance(target, StepsTarget)
    limits = Limits(memory_mb=target.limits.memory_mb, cpu_seconds=target.limits.cpu_seconds,
                    output_bytes=UNLIMITED if steps else target.limits.output_bytes)
    stdin = None if isinstance(target, StepsTarget) or target.stdin is None \
        else target.stdin.encode()
    argv = steps_argv(target, nonce) if isinstance(target, StepsTarget) \
        else tuple(target.command)
    return CommandSpec(argv=argv, env=dict(target.env), stdin=stdin, files=dict(target.files),
                       working_dir=target.working_dir, network=target.network,
                       timeout_seconds=target.timeout_seconds, limits=limits)


def result_of(ended: Ended, abort_reason: str | None) -> Result:
    """`output_bytes` counts every byte the command wrote; the first `limits.output_bytes` of
    them are stored (`output_truncated` when that is not all)."""
    error = ended.error
    if ended.status == "failed" and error is None and ended.exit_code is not None:
        error = f"the command exited with code {ended.exit_code}"
    if ended.status == "cancelled" and abort_reason:
        error = f"{abort_reason}: the process tree was killed"
    if ended.egress_refused and ended.status != "succeeded":
        # The likely cause of the failure, said where the run's status is read (ADR 0038).
        refused = ", ".join(dict.fromkeys(ended.egress_refused))
        error = f"{error or 'failed'}; connections blocked by egress policy: {refused}"
    return Result(ended.status, error=error, exit_code=ended.exit_code, signal=ended.signal,
                  output_bytes=ended.output_bytes, output_truncated=ended.output_truncated)


async def _abort(whole: StoredOutput, steps: StepsOutput | None) -> None:
    await whole.abort()
    if steps is not None:
        await steps.abort()


@dataclass(frozen=True)
class Topics:
    status: str = RUNS_STATUS
    dlq: str = RUNS_DLQ


@dataclass
class Running:
    req: CommandRunRequested
    cancel: asyncio.Event
    reason: str | None = None


class CommandRunner:
    def __init__(self, due_set: DueSet, producer: Any, store: ObjectStore, sandbox: Sandbox,
                 lease_ms: int, executor_id: str = "", topics: Topics | None = None,
                 clock: ReferenceClock | None = None) -> None:
        self.due_set, self.producer, self.store, self.sandbox = due_set, producer, store, sandbox
        self.lease_ms = lease_ms
        self.topics = topics or Topics()
        # "Due" and leases are judged by the due-set's Redis clock (ADR 0012).
        self.clock = clock or ReferenceClock(due_set.server_time_ms)
        self.id = executor_id or f"{socket.gethostname()}-{os.getpid()}"
        self.leases = Leases(due_set, self.clock, self.id, lease_ms)
        self.running: dict[str, Running] = {}

    async def handle(self, msg: ConsumerRecord[bytes, bytes]) -> None:
        """Run one request to its end; transient errors before the run let the lease lapse
        (the attempt is requeued, nothing ran), after it the writes are retried."""
        while True:
            try:
                claimed = await self.claim(msg)
                break
            except TRANSIENT as exc:  # nothing ran yet: keep the offset, try again
                log.error("claim failed, retrying", extra={"offset": msg.offset,
                                                           "error": repr(exc)})
                await asyncio.sleep(1.0)
        if claimed is None:
            return
        req, entry = claimed
        self.leases.hold(entry)
        try:
            await self.attempt(req, entry)
        except TRANSIENT as exc:
            log.error("attempt not finished; its lease will lapse and requeue it",
                      extra={"run_id": req.run_id, "attempt": req.attempt, "error": repr(exc)})
        except Exception as exc:  # poison: dead-lettered and ended, so nothing trips on it again
            log.exception("poison command run request", extra={"run_id": req.run_id})
            await self.due_set.complete(entry, None, 0)
            await self.dead_letter(msg, f"attempt failed: {exc!r}")
        finally:
            self.leases.release(entry)

    async def claim(self, msg: ConsumerRecord[bytes, bytes]) -> tuple[CommandRunRequested, Entry] | None:
        try:
            req = CommandRunRequested.model_validate_json(msg.value or b"")
            entry = Entry.parse(req.member)
        except (ValidationError, ValueError) as exc:
            SKIPPED.labels("invalid").inc()
            await self.dead_letter(msg, f"invalid command run request: {exc}")
            return None
        verdict = await self.due_set.claim(entry, req.member, self.id, await self.clock.now_ms(),
                                           self.lease_ms)
        if verdict != Claim.OK:
            SKIPPED.labels(verdict).inc()
            log.info("run not claimed", extra={"run_id": req.run_id, "job_id": req.job_id,
                                               "attempt": req.attempt, "reason": verdict})
            return None
        return req, entry

    async def dead_letter(self, msg: ConsumerRecord[bytes, bytes], reason: str) -> None:
        letter = DeadLetter(source_topic=msg.topic, partition=msg.partition, offset=msg.offset,
                            key=(msg.key or b"").decode(errors="replace"),
                            value=(msg.value or b"").decode(errors="replace"),
                            reason=reason[:2000], at=utcnow())
        await self.producer.send_and_wait(self.topics.dlq, kafka.encode(letter), key=msg.key)

    async def attempt(self, req: CommandRunRequested, entry: Entry) -> None:
        verdict = await start_when_due(self.due_set, self.clock, entry, to_ms(req.due_at),
                                       req.overlap, self.id, req.member)
        if verdict.kind is Start.LOST:
            lost_lease(req.run_id, req.job_id, req.attempt)
            SKIPPED.labels(verdict.kind).inc()
            return
        if verdict.kind in NOT_FIRED:
            await self.not_fired(req, verdict.kind)
            return
        if verdict.kind in NOT_STARTED:
            status, error, reason = NOT_STARTED[verdict.kind]
            await self.finish(req, entry, Result(status, error=error, reason=reason,
                                                 retryable=False), None)
            return
        started = from_ms(await self.clock.now_ms())
        await self.report_running(req, started)
        result = await self.run(req, entry)
        await self.finish(req, entry, result, started)

    async def run(self, req: CommandRunRequested, entry: Entry) -> Result:
        """The command (or the steps) in its sandbox, its output streamed to the store."""
        target = req.target
        try:
            key = output_key(req.tenant, req.job_id, req.run_id, req.attempt)
        except InvalidKey as exc:
            return Result("failed", error=f"no place to keep the output: {exc}", retryable=False)
        running = Running(req, asyncio.Event())
        runkey = entry.runkey  # the key a replacing run's abort flag names
        self.running[runkey] = running
        IN_FLIGHT.inc()
        whole = StoredOutput(self.store, key)
        steps: StepsOutput | None = None
        nonce = new_nonce()
        if isinstance(target, StepsTarget):
            steps = StepsOutput(target, nonce, whole, lambda name: StoredOutput(
                self.store, output_key(req.tenant, req.job_id, req.run_id, req.attempt, name)),
                target.limits.output_bytes)
        try:
            spec = await self.with_source(command_spec(target, nonce), req)
            ended = await self.sandbox.run(spec, steps or whole, running.cancel)
            records = None if steps is None else await steps.finish(ended.status)
            await whole.close()
        except SpecRefused as exc:
            await _abort(whole, steps)
            return Result("failed", error=str(exc), retryable=False)
        except asyncio.CancelledError:
            await _abort(whole, steps)
            raise
        except Exception as exc:  # the store or the sandbox failed, not the command
            await _abort(whole, steps)
            log.exception("command not run", extra={"run_id": req.run_id, "job_id": req.job_id})
            return Result("failed", error=f"the command could not be run: {exc!r}"[:2000])
        finally:
            IN_FLIGHT.dec()
            self.running.pop(runkey, None)
        result = result_of(ended, running.reason)
        if steps is None or records is None:
            return result
        return replace(result, output_bytes=steps.limited.total,
                       output_truncated=steps.limited.truncated,
                       steps=[{"name": r.name, "status": r.status, "exit_code": r.exit_code,
                               "duration_ms": r.duration_ms} for r in records])

    async def with_source(self, spec: CommandSpec, req: CommandRunRequested) -> CommandSpec:
        """`spec` with the source's files added (a name in both is refused, not overwritten)."""
        if req.target.source is None:
            return spec
        given = await source_files(self.store, req.tenant, req.target.source)
        both = sorted(set(given) & set(spec.files))
        if both:
            raise SpecRefused(f"files: {both[0]!r} is in the source too")
        return replace(spec, files={**given, **spec.files})

    def status_event(self, req: CommandRunRequested, status: RunStatus, **fields: Any) -> bytes:
        return kafka.encode(RunStatusChanged(
            run_id=req.run_id, job_id=req.job_id, tenant=req.tenant, scheduled_at=req.scheduled_at,
            attempt=req.attempt, status=status, at=utcnow(), executor_id=self.id, **fields))

    async def send(self, req: CommandRunRequested, event: bytes) -> None:
        await self.producer.send_and_wait(self.topics.status, event, key=req.job_id.encode())

    async def report_running(self, req: CommandRunRequested, started: datetime) -> None:
        """Best effort: the final status carries started_at and lateness too."""
        lateness = max(0, to_ms(started) - to_ms(req.due_at))
        try:
            await self.send(req, self.status_event(req, "running", started_at=started,
                                                   lateness_ms=lateness))
        except TRANSIENT as exc:
            log.warning("running status not sent", extra={"run_id": req.run_id,
                                                          "error": repr(exc)})

    async def not_fired(self, req: CommandRunRequested, verdict: Start) -> None:
        """A stale or paused firing: recorded as a not-final `skipped`, the attempt stays open."""
        SKIPPED.labels(verdict).inc()
        event = self.status_event(req, "skipped", finished_at=from_ms(await self.clock.now_ms()),
                                  final=False, reason=NOT_FIRED[verdict])
        await until_done(lambda: self.send(req, event), self._retrying(req, "status"))

    async def finish(self, req: CommandRunRequested, entry: Entry, result: Result,
                     started: datetime | None) -> None:
        """The final status of the attempt, then its completion (and the retry, if one is due)."""
        finished = from_ms(await self.clock.now_ms())
        retry = should_retry(Outcome(result.status, error=result.error,
                                     retryable=result.retryable), req.attempt, req.retry)
        retry_at = finished + timedelta(seconds=backoff_seconds(req.retry, req.attempt))
        event = self.status_event(
            req, result.status, started_at=started, finished_at=finished,
            lateness_ms=None if started is None else max(0, to_ms(started) - to_ms(req.due_at)),
            duration_ms=None if started is None else to_ms(finished) - to_ms(started),
            error=result.error, final=not retry,
            reason=f"retry at {retry_at.isoformat()}" if retry else result.reason,
            retry_at=retry_at if retry else None, exit_code=result.exit_code,
            signal=result.signal, output_bytes=result.output_bytes,
            output_truncated=result.output_truncated, steps=result.steps)
        await until_done(lambda: self.send(req, event), self._retrying(req, "status"))
        await until_done(lambda: self.due_set.complete(
            entry, entry.next_attempt() if retry else None, to_ms(retry_at)),
            self._retrying(req, "complete"))
        FINISHED.labels(result.status).inc()
        log.info("command attempt finished", extra={
            "run_id": req.run_id, "job_id": req.job_id, "attempt": req.attempt,
            "status": result.status, "exit_code": result.exit_code, "error": result.error})

    def _retrying(self, req: CommandRunRequested, write: str) -> Any:
        def note(exc: BaseException, delay: float) -> None:
            WRITE_RETRIES.labels(write).inc()
            log.warning("write after the run failed, retrying",
                        extra={"run_id": req.run_id, "job_id": req.job_id, "write": write,
                               "retry_in": delay, "error": repr(exc)})
        return note

    async def watch_aborts(self) -> None:
        """Kill the runs whose job was cancelled or which a newer run replaced."""
        runs = list(self.running.items())
        if not runs:
            return
        flags = await self.due_set.abort_flags([(r.req.job_id, key) for key, r in runs])
        for (_, run), (cancelled, replaced) in zip(runs, flags, strict=True):
            reason = None
            if cancelled is not None and cancelled > run.req.job_version:
                reason = "job cancelled"
            elif replaced:
                reason = "replaced by a newer run"
            if reason and not run.cancel.is_set():
                run.reason = reason
                run.cancel.set()
                log.info("run aborted", extra={"run_id": run.req.run_id,
                                               "job_id": run.req.job_id, "reason": reason})
