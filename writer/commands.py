"""Applies job commands to Postgres and the due-set, idempotently and in per-job order."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from duetime import job_limits, schedule
from duetime.catchup import Outage
from duetime.due_set import MANUAL, MANUAL_OVERRIDE, DueSet, Entry, Load
from duetime.kafka_targets import TopicPolicy
from duetime.loading import Plan, entries_for, plan, record_skipped, run_template
from duetime.merge_patch import merge_patch
from duetime.postgres import Conn
from duetime.settings import JobLimitSettings, KafkaTargetSettings
from duetime.timeutil import to_ms, utcnow
from schemas.api import JobSpec, KafkaTarget
from schemas.events import JobCommand, JobEvent
from schemas.redaction import restore_spec

log = logging.getLogger(__name__)
_OUTCOME = {"create": "job.created", "cancel": "job.cancelled"}


@dataclass
class Applied:
    event: JobEvent
    # Redis work, done inside the Postgres transaction just before it commits: a crash in
    # between rolls back Postgres and the replayed command loads Redis again (idempotent).
    load: Load | None = None
    cancel_flag: tuple[str, int] | None = None


@dataclass
class CreateBatch:
    """What `create_many` did with each create of a batch."""

    applied: list[tuple[JobCommand, Applied]] = field(default_factory=list)
    rejected: list[tuple[JobCommand, Rejected]] = field(default_factory=list)
    # For `apply`, one by one after the batch: creates of jobs that exist, and any that failed
    # for another reason than a rejection.
    deferred: list[JobCommand] = field(default_factory=list)


def _created(cmd: JobCommand, state: str, window: Plan) -> Applied:
    assert cmd.spec is not None and cmd.job_id is not None
    return Applied(_event(cmd, 1), load=Load(
        cmd.job_id, 1, state, run_template(cmd.job_id, cmd.tenant, 1, cmd.spec),
        entries_for(cmd.job_id, 1, cmd.spec, window.fire, window.next_ms)))


class Rejected(Exception):
    """The command is well-formed but cannot apply (unknown job, cancelled job, bad patch)."""


def check_limits(spec: JobSpec, limits: JobLimitSettings) -> None:
    """Reject a job beyond this deployment's limits, as the job service answers 422."""
    found = job_limits.violations(spec, limits)
    if found:
        raise Rejected("; ".join(f"{v.field}: {v.message}" for v in found))


def _event(cmd: JobCommand, version: int | None, kind: str | None = None,
           reason: str | None = None) -> JobEvent:
    etype = kind or _OUTCOME.get(cmd.type, "job.updated")
    return JobEvent(type=etype, job_id=cmd.job_id, tenant=cmd.tenant,  # type: ignore[arg-type]
                    command_id=cmd.command_id, command_type=cmd.type, version=version,
                    at=utcnow(), reason=reason)


def _template_of(row: asyncpg.Record, spec: JobSpec | None = None) -> dict[str, Any] | None:
    """The run template of the job's stored version (`row`), kept while instants it owed can
    still be popped again (pop_due.lua, ADR 0036). None for a stored spec that no longer
    validates: the pause or edit still applies, and such an instant is dropped as before."""
    if spec is None:
        try:
            spec = JobSpec.model_validate(row["spec"])
        except ValueError:  # ValidationError is a ValueError
            log.warning("stored spec not valid: its owed instants keep no template",
                        extra={"job_id": row["job_id"], "version": row["version"]})
            return None
    return run_template(row["job_id"], row["tenant"], row["version"], spec)


class CommandHandler:
    def __init__(self, queries: dict[str, str], due_set: DueSet, load_ahead: timedelta,
                 limits: JobLimitSettings, topics: TopicPolicy | None = None) -> None:
        self.q = queries
        self.due_set = due_set
        self.ahead = load_ahead
        self.limits = limits
        self.topics = topics or TopicPolicy(KafkaTargetSettings())

    def _check_target(self, cmd: JobCommand, spec: JobSpec) -> None:
        """Commands from ingress topics never passed the job service: check their targets."""
        if isinstance(spec.target, KafkaTarget):
            refusal = self.topics.refusal(cmd.tenant, spec.target.topic)
            if refusal is not None:
                raise Rejected(f"target.topic: {refusal}")

    async def apply(self, conn: Conn, cmd: JobCommand) -> Applied:
        """Apply `cmd` at most once: a replay of an applied command changes nothing."""
        assert cmd.job_id is not None
        row = await conn.fetchrow(self.q["lock_job"], cmd.job_id)
        if await conn.fetchval(self.q["record_command"], cmd.command_id, cmd.job_id) is None:
            # Applied before (the writer crashed before committing its offset): answer as
            # then, without a second version bump, pause or resume.
            return Applied(_event(cmd, row["version"] if row is not None else None))
        if cmd.type == "create":
            return await self._create(conn, cmd, row)
        if row is None or row["tenant"] != cmd.tenant:
            raise Rejected(f"no job {cmd.job_id}")
        if row["state"] == "cancelled" and cmd.type != "cancel":
            raise Rejected("the job is cancelled")
        handler = {
            "update": self._update, "patch": self._update, "cancel": self._cancel,
            "pause": self._pause, "resume": self._resume, "run": self._run,
        }[cmd.type]
        return await handler(conn, cmd, row)

    async def _schedule_from(self, conn: Conn, cmd: JobCommand, spec: JobSpec,
                             created_at: datetime, after: datetime) -> tuple[datetime | None, Plan]:
        first, window = self._plan_from(spec, created_at, after, await self._outages(cmd))
        await self._record_skipped(conn, cmd, window)
        return first, window

    def _plan_from(self, spec: JobSpec, created_at: datetime, after: datetime,
                   outages: list[Outage]) -> tuple[datetime | None, Plan]:
        now = utcnow()
        first = schedule.first_fire(spec, created_at) if spec.one_shot else \
            schedule.next_fire(spec, created_at, after)
        return first, plan(spec, created_at, first, now, now + self.ahead, 0, outages)

    async def _outages(self, cmd: JobCommand) -> list[Outage]:
        assert cmd.job_id is not None
        return await self.due_set.outages(self.due_set.shard_of(cmd.job_id))

    async def _record_skipped(self, conn: Conn, cmd: JobCommand, window: Plan) -> None:
        """Firings missed in an outage and not made by the catch-up policy, as the watcher
        records them (ADR 0011)."""
        if cmd.job_id is not None:
            await record_skipped(conn, [(cmd.job_id, cmd.tenant, t) for t in window.skipped])

    async def _create(self, conn: Conn, cmd: JobCommand,
                      row: asyncpg.Record | None) -> Applied:
        assert cmd.spec is not None and cmd.job_id is not None
        spec = cmd.spec
        if row is not None:
            if row["tenant"] == cmd.tenant and row["spec"] == spec.model_dump(mode="json"):
                return Applied(_event(cmd, row["version"]))  # a replay or a retried request
            raise Rejected("a different job with this id exists")
        self._check_create(cmd, spec)
        first, window = await self._schedule_from(conn, cmd, spec, cmd.issued_at,
                                                  cmd.issued_at - timedelta(microseconds=1))
        state = "active" if first is not None else "completed"
        await conn.execute(
            self.q["insert_job"], cmd.job_id, cmd.tenant, spec.name, spec.model_dump(mode="json"),
            spec.schedule.type, spec.target.type, state, spec.priority, spec.labels, first,
            window.cursor, cmd.command_id, cmd.issued_at, len(window.fire),
        )
        return _created(cmd, state, window)

    def _check_create(self, cmd: JobCommand, spec: JobSpec) -> None:
        try:
            schedule.validate(spec, cmd.issued_at)
        except schedule.ScheduleError as exc:
            raise Rejected(f"{exc.field}: {exc}") from exc
        check_limits(spec, self.limits)
        self._check_target(cmd, spec)

    async def create_many(self, conn: Conn, cmds: list[JobCommand]) -> CreateBatch:
        """Apply creates of distinct jobs with one statement per step instead of per command.

        The same outcome as `apply` for each: a create of a job that exists (a replay, or a
        conflict) is deferred to `apply`, as is one that fails for a reason other than a
        rejection (so only that one is dead-lettered); a rejected create is not recorded; a
        create recorded before is answered as a replay. The caller loads `applied` into the
        due-set before it commits, as for `apply`.
        """
        done = CreateBatch()
        ids = [cmd.job_id for cmd in cmds]
        existing = {row["job_id"] for row in await conn.fetch(self.q["lock_jobs"], ids)}
        done.deferred = [cmd for cmd in cmds if cmd.job_id in existing]
        fresh = [cmd for cmd in cmds if cmd.job_id not in existing]
        outages = await self.due_set.outages_many(
            self.due_set.shard_of(cmd.job_id) for cmd in fresh if cmd.job_id is not None)
        planned: list[tuple[JobCommand, datetime | None, Plan]] = []
        rejected: list[tuple[JobCommand, Rejected]] = []
        for cmd in fresh:
            assert cmd.spec is not None and cmd.job_id is not None
            try:
                self._check_create(cmd, cmd.spec)
                first, window = self._plan_from(cmd.spec, cmd.issued_at,
                                                cmd.issued_at - timedelta(microseconds=1),
                                                outages[self.due_set.shard_of(cmd.job_id)])
            except Rejected as exc:
                rejected.append((cmd, exc))
            except Exception:  # its own transaction (apply) will say why, for it alone
                done.deferred.append(cmd)
            else:
                planned.append((cmd, first, window))
        await self._answer_rejected(conn, rejected, done)
        recorded = await self._record_commands(conn, [cmd for cmd, _, _ in planned])
        rows: list[tuple[JobCommand, datetime | None, Plan]] = []
        for cmd, first, window in planned:
            if cmd.command_id in recorded:
                recorded.discard(cmd.command_id)  # a command id twice: the first one applies
                rows.append((cmd, first, window))
            else:
                done.applied.append((cmd, Applied(_event(cmd, None))))  # applied before
        await self._insert_jobs(conn, rows)
        for cmd, first, window in rows:
            state = "active" if first is not None else "completed"
            done.applied.append((cmd, _created(cmd, state, window)))
        return done

    async def _answer_rejected(self, conn: Conn, rejected: list[tuple[JobCommand, Rejected]],
                               done: CreateBatch) -> None:
        """As `apply`: a command applied before is answered as a replay, even if it would be
        rejected now (the limits changed); the others are rejected and not recorded."""
        if not rejected:
            return
        seen = {row["command_id"] for row in await conn.fetch(
            self.q["applied_before"], [cmd.command_id for cmd, _ in rejected])}
        for cmd, exc in rejected:
            if cmd.command_id in seen:
                done.applied.append((cmd, Applied(_event(cmd, None))))
            else:
                done.rejected.append((cmd, exc))

    async def _record_commands(self, conn: Conn, cmds: list[JobCommand]) -> set[str]:
        if not cmds:
            return set()
        return {row["command_id"] for row in await conn.fetch(
            self.q["record_commands"], [cmd.command_id for cmd in cmds],
            [cmd.job_id for cmd in cmds])}

    async def _insert_jobs(self, conn: Conn,
                           rows: list[tuple[JobCommand, datetime | None, Plan]]) -> None:
        if not rows:
            return
        rows = sorted(rows, key=lambda row: row[0].job_id or "")  # the order lock_jobs locks in
        specs = [cmd.spec for cmd, _, _ in rows if cmd.spec is not None]
        assert len(specs) == len(rows)
        await conn.execute(
            self.q["insert_jobs"], [cmd.job_id for cmd, _, _ in rows],
            [cmd.tenant for cmd, _, _ in rows], [spec.name for spec in specs],
            [spec.model_dump_json() for spec in specs],
            [spec.schedule.type for spec in specs], [spec.target.type for spec in specs],
            ["active" if first is not None else "completed" for _, first, _ in rows],
            [spec.priority for spec in specs], [orjson.dumps(spec.labels).decode() for spec in specs],
            [first for _, first, _ in rows], [window.cursor for _, _, window in rows],
            [cmd.command_id for cmd, _, _ in rows], [cmd.issued_at for cmd, _, _ in rows],
            [len(window.fire) for _, _, window in rows],
        )
        await record_skipped(conn, [(cmd.job_id, cmd.tenant, t) for cmd, _, window in rows
                                    if cmd.job_id is not None for t in window.skipped])

    async def _update(self, conn: Conn, cmd: JobCommand,
                      row: asyncpg.Record) -> Applied:
        assert cmd.job_id is not None
        try:
            edited = cmd.spec.model_dump(mode="json") if cmd.spec is not None else \
                merge_patch(row["spec"], cmd.patch)
            # A header sent back as the redaction marker keeps its stored value (write-only).
            spec = JobSpec.model_validate(restore_spec(edited, row["spec"]))
            schedule.validate(spec, cmd.issued_at)
        except (ValueError, schedule.ScheduleError) as exc:  # ValidationError is a ValueError
            raise Rejected(f"the updated job is invalid: {exc}") from exc
        check_limits(spec, self.limits)
        self._check_target(cmd, spec)
        # Schedules are anchored at the job's creation, whatever the edit (docs/guarantees.md):
        # an interval keeps its phase, a delay counts from the create; the watcher and the run
        # recorder plan from the same anchor, so every component agrees on the instants.
        first, window = await self._schedule_from(conn, cmd, spec, row["created_at"],
                                                  cmd.issued_at)
        state = row["state"] if first is not None else "completed"
        if state == "completed" and row["state"] == "paused":
            state = "paused"
        version = await conn.fetchval(
            self.q["replace_job"], cmd.job_id, spec.model_dump(mode="json"), spec.name,
            spec.schedule.type, spec.target.type, spec.priority, spec.labels, state, first,
            window.cursor if state == "active" else first, cmd.issued_at,
            len(window.fire) if state == "active" else 0,
        )
        fire = window.fire if state == "active" else []
        return Applied(_event(cmd, version), load=Load(
            cmd.job_id, version, state, run_template(cmd.job_id, cmd.tenant, version, spec),
            entries_for(cmd.job_id, version, spec, fire, window.next_ms),
            supersedes=(row["version"], to_ms(cmd.issued_at)),
            superseded_template=_template_of(row)))

    async def _cancel(self, conn: Conn, cmd: JobCommand,
                      row: asyncpg.Record) -> Applied:
        assert cmd.job_id is not None
        if row["state"] == "cancelled":
            return Applied(_event(cmd, row["version"]))
        version = await conn.fetchval(self.q["set_state"], cmd.job_id, "cancelled", 1, None, None,
                                      cmd.issued_at)
        return Applied(_event(cmd, version), load=Load(cmd.job_id, version, "cancelled",
                                                          {"tenant": row["tenant"]}, []),
                       cancel_flag=(cmd.job_id, version))

    async def _pause(self, conn: Conn, cmd: JobCommand,
                     row: asyncpg.Record) -> Applied:
        assert cmd.job_id is not None
        if row["state"] != "active":
            return Applied(_event(cmd, row["version"]))
        await conn.execute(self.q["set_state"], cmd.job_id, "paused", 0, row["next_run_at"],
                           None, cmd.issued_at)
        return Applied(_event(cmd, row["version"]),
                       load=Load(cmd.job_id, row["version"], "paused", None, [],
                                 supersedes=(row["version"], to_ms(cmd.issued_at)),
                                 superseded_template=_template_of(row)))

    async def _resume(self, conn: Conn, cmd: JobCommand,
                      row: asyncpg.Record) -> Applied:
        """Resume as a new version: what was loaded before the pause is dropped, and the firings
        planned now are counted once, on top of the firings made (issue 6 defect 8)."""
        assert cmd.job_id is not None
        if row["state"] != "paused":
            return Applied(_event(cmd, row["version"]))
        spec = JobSpec.model_validate(row["spec"])
        now = utcnow()
        # Firings that fell due while paused are not caught up; a one-shot job that did not
        # fire yet fires now (its run id, and so its Idempotency-Key, is unchanged).
        if spec.one_shot:
            first = schedule.first_fire(spec, row["created_at"]) \
                if row["next_run_at"] is not None else None
        else:
            first = schedule.next_fire(spec, row["created_at"], now)
        window = plan(spec, row["created_at"], first, now, now + self.ahead, row["run_count"],
                      await self._outages(cmd))
        await self._record_skipped(conn, cmd, window)
        state = "active" if first is not None else "completed"
        version = await conn.fetchval(self.q["resume_job"], cmd.job_id, state, first,
                                      window.cursor, cmd.issued_at, len(window.fire))
        return Applied(_event(cmd, version), load=Load(
            cmd.job_id, version, state, run_template(cmd.job_id, row["tenant"], version, spec),
            entries_for(cmd.job_id, version, spec, window.fire, window.next_ms),
            supersedes=(row["version"], to_ms(cmd.issued_at)),
            superseded_template=_template_of(row, spec)))

    async def _run(self, conn: Conn, cmd: JobCommand,
                   row: asyncpg.Record) -> Applied:
        assert cmd.job_id is not None
        spec = JobSpec.model_validate(row["spec"])
        at = cmd.run_at or cmd.issued_at
        flag = MANUAL_OVERRIDE if cmd.override_overlap else MANUAL
        entry = Entry(cmd.job_id, row["version"], to_ms(at), 1, spec.priority, flag)
        return Applied(_event(cmd, row["version"]), load=Load(
            cmd.job_id, row["version"], row["state"],
            run_template(cmd.job_id, row["tenant"], row["version"], spec), [entry]))
