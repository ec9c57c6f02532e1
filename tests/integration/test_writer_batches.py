"""The writer's batch of creates (ADR 0023) in-process against the real Postgres, Redis, Kafka.

Creates of jobs named once in a consumed batch share one transaction, one statement per step
and one due-set pipeline; everything else (and creates of jobs that exist) goes one by one,
in order per job. These tests hand `Writer.handle_batch` such batches and check what Postgres,
the due-set and Kafka hold afterwards, as the per-command path would have left them. Each test
has a database of its own (fresh_db), so it can count rows and add a constraint that turns one
job into poison, and a due-set prefix of its own, so the stack's dispatcher fires nothing.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from redis.asyncio import Redis

from duetime import kafka
from duetime.due_set import DueSet, Entry
from duetime.loading import run_template
from duetime.timeutil import to_ms, utcnow
from schemas.api import JobSpec
from schemas.topics import JOB_COMMANDS, JOB_COMMANDS_DLQ, JOB_EVENTS, RUNS_STATUS
from tests.integration.test_writer_poison import Batch, create
from tests.support.kafka import find_messages, kafka_options, kafka_settings
from writer.service import Settings, Writer

SHARDS = 4


class RoundTrips:
    """Counts the round trips a Redis client makes: each command sent on its own (scripts
    too) and each pipeline executed, whatever it holds."""

    def __init__(self, redis: Redis) -> None:
        self.count = 0
        single: Callable[..., Awaitable[Any]] = redis.execute_command
        pipeline = redis.pipeline

        async def execute_command(*args: Any, **options: Any) -> Any:
            self.count += 1
            return await single(*args, **options)

        def counted_pipeline(*args: Any, **options: Any) -> Any:
            pipe = pipeline(*args, **options)
            execute: Callable[..., Awaitable[Any]] = pipe.execute

            async def counted(*a: Any, **kw: Any) -> Any:
                self.count += 1
                return await execute(*a, **kw)

            setattr(pipe, "execute", counted)  # noqa: B010 - a method, patched per instance
            return pipe

        setattr(redis, "execute_command", execute_command)  # noqa: B010
        setattr(redis, "pipeline", counted_pipeline)  # noqa: B010


@pytest.fixture
async def own_redis(env: dict[str, str]) -> AsyncIterator[Redis]:
    client = Redis.from_url(env["DUETIME_REDIS_URL"])
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def trips(own_redis: Redis) -> RoundTrips:
    return RoundTrips(own_redis)


@pytest.fixture
async def writer(env: dict[str, str], fresh_db: asyncpg.Pool[Any], own_redis: Redis,
                 due_prefix: str, trips: RoundTrips) -> AsyncIterator[Writer]:
    settings = Settings(**kafka_options(env), postgres_dsn=env["DUETIME_POSTGRES_DSN"],
                        redis_url=env["DUETIME_REDIS_URL"], due_shards=SHARDS)
    due = DueSet(own_redis, shards=SHARDS, prefix=due_prefix)
    async with kafka.producer(settings, f"test-{due_prefix}") as producer:
        yield Writer(fresh_db, producer, due, settings)


def _id() -> str:
    return uuid.uuid4().hex


def command(kind: str, job_id: str, **fields: Any) -> dict[str, Any]:
    return {"command_id": _id(), "type": kind, "job_id": job_id, "tenant": "dev",
            "issued_at": utcnow().isoformat(), **fields}


def batch_of(*commands: dict[str, Any]) -> Batch:
    batch = Batch()
    for cmd in commands:
        batch.add(JOB_COMMANDS, cmd["job_id"], cmd)
    return batch


async def events_for(env: dict[str, str], commands: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The outcome event of each command, by command id."""
    ids = {cmd["command_id"] for cmd in commands}
    found = await find_messages(kafka_settings(env), JOB_EVENTS,
                                lambda m: m.get("command_id") in ids, count=len(ids))
    return {event["command_id"]: event for event in found}


async def entries_of(due: DueSet, job_id: str) -> list[Entry]:
    members = await due.redis.zrange(due.key("due", due.shard_of(job_id)), 0, -1)
    entries = [Entry.parse(m.decode() if isinstance(m, bytes) else str(m)) for m in members]
    return [e for e in entries if e.job_id == job_id]


async def test_many_creates_are_stored_and_loaded_with_one_pipeline(
    writer: Writer, fresh_db: asyncpg.Pool[Any], trips: RoundTrips,
) -> None:
    soon = (utcnow() + timedelta(seconds=5)).replace(microsecond=0)
    later = utcnow() + timedelta(days=1)
    fires = [create(_id(), name=f"soon-{i}", priority=i % 10,
                    schedule={"type": "once", "at": soon.isoformat()}) for i in range(60)]
    recurring = [create(_id(), name=f"every-{i}", schedule={"type": "interval", "every_seconds": 3})
                 for i in range(40)]
    waits = [create(_id(), name=f"later-{i}", schedule={"type": "once", "at": later.isoformat()})
             for i in range(100)]
    commands = fires + recurring + waits

    await writer.handle_batch(batch_of(*commands).records)

    # Two round trips for 200 creates: the outages of the shards, then every load at once
    # (one by one it is two per create).
    assert trips.count == 2
    rows = {r["job_id"]: r for r in await fresh_db.fetch("SELECT * FROM jobs")}
    assert set(rows) == {cmd["job_id"] for cmd in commands}
    assert await fresh_db.fetchval("SELECT count(*) FROM applied_commands") == len(commands)
    due = writer.due_set
    for cmd in commands:
        row, spec = rows[cmd["job_id"]], JobSpec.model_validate(cmd["spec"])
        assert (row["tenant"], row["name"], row["version"], row["state"]) == \
            ("dev", spec.name, 1, "active")
        assert row["spec"] == spec.model_dump(mode="json")
        assert row["created_command"] == cmd["command_id"]
        shard = due.shard_of(cmd["job_id"])
        assert await due.redis.hget(due.key("jobs", shard), cmd["job_id"]) == b"1|active"
        template = await due.redis.hget(due.key("specs", shard), cmd["job_id"])
        assert template is not None
        assert orjson.loads(template) == run_template(cmd["job_id"], "dev", 1, spec)
    for cmd in fires:
        row = rows[cmd["job_id"]]
        entry = Entry(cmd["job_id"], 1, to_ms(soon), 1, cmd["spec"]["priority"])
        score = await due.redis.zscore(due.key("due", due.shard_of(cmd["job_id"])),
                                       entry.member())
        assert score == to_ms(soon)
        assert row["next_run_at"] == soon and row["enqueue_at"] is None
        assert row["planned_count"] == 1
    for cmd in recurring:
        row = rows[cmd["job_id"]]
        mine = await entries_of(due, cmd["job_id"])
        # 15 s of load-ahead at one firing every 3 s, the first one the next multiple of 3 s.
        assert len(mine) == row["planned_count"] >= 4
        assert sorted(e.scheduled_ms for e in mine)[0] == to_ms(row["next_run_at"])
        assert row["enqueue_at"] is not None
    for cmd in waits:
        assert rows[cmd["job_id"]]["planned_count"] == 0
        assert await entries_of(due, cmd["job_id"]) == []


async def test_a_mixed_batch_answers_every_command_as_one_by_one_would(
    writer: Writer, fresh_db: asyncpg.Pool[Any], env: dict[str, str],
) -> None:
    before, taken = _id(), _id()
    replayed = create(before, name="applied-before")
    original = create(taken, name="the-original")
    await writer.handle_batch(batch_of(replayed, original).records)

    fresh = [create(_id(), name=f"fresh-{i}") for i in range(5)]
    conflict = create(taken, name="another-job-same-id")
    beyond = create(_id(), retry={"max_attempts": 50})  # beyond max_retry_attempts (20)
    job = _id()
    sequence = [create(job, name="first"), command("patch", job, patch={"name": "patched"}),
                command("pause", job)]
    # A patch of a job created later in the same batch comes too early: one by one it is
    # rejected, so batching the create ahead of it would change the outcome.
    early_job = _id()
    early = [command("patch", early_job, patch={"name": "too-early"}),
             create(early_job, name="in-order")]
    await writer.handle_batch(
        batch_of(*fresh, replayed, *early, conflict, beyond, *sequence).records)

    names = dict(await fresh_db.fetch("SELECT job_id, name FROM jobs"))
    assert names == {**{c["job_id"]: c["spec"]["name"] for c in fresh},
                     before: "applied-before", taken: "the-original", job: "patched",
                     early_job: "in-order"}
    assert beyond["job_id"] not in names
    recorded = {r["command_id"] for r in await fresh_db.fetch(
        "SELECT command_id FROM applied_commands")}
    assert beyond["command_id"] not in recorded and conflict["command_id"] not in recorded
    assert {c["command_id"] for c in [*fresh, replayed, *sequence]} <= recorded
    # The create, then the patch (version 2), then the pause, in the batch's order.
    row = await fresh_db.fetchrow("SELECT state, version FROM jobs WHERE job_id = $1", job)
    assert row is not None and (row["state"], row["version"]) == ("paused", 2)
    due = writer.due_set
    assert await due.redis.hget(due.key("jobs", due.shard_of(job)), job) == b"2|paused"

    events = await events_for(env, [*fresh, conflict, beyond, *sequence, *early])
    for cmd in fresh:
        assert (events[cmd["command_id"]]["type"], events[cmd["command_id"]]["version"]) == \
            ("job.created", 1)
    assert events[conflict["command_id"]]["type"] == "job.rejected"
    assert events[conflict["command_id"]]["reason"] == "a different job with this id exists"
    assert events[beyond["command_id"]]["type"] == "job.rejected"
    assert "retry.max_attempts" in events[beyond["command_id"]]["reason"]
    assert [events[c["command_id"]]["type"] for c in sequence] == \
        ["job.created", "job.updated", "job.updated"]
    assert [events[c["command_id"]]["type"] for c in early] == ["job.rejected", "job.created"]
    # Both deliveries of the replayed command are answered job.created, version 1.
    replays = await find_messages(kafka_settings(env), JOB_EVENTS,
                                  lambda m: m.get("command_id") == replayed["command_id"],
                                  count=2)
    assert [(e["type"], e["version"]) for e in replays] == [("job.created", 1)] * 2


async def test_a_poison_create_is_dead_lettered_alone_and_the_batch_applied(
    writer: Writer, fresh_db: asyncpg.Pool[Any], env: dict[str, str],
) -> None:
    # A row Postgres refuses (an integrity error, as a value the schema does not hold would
    # be): the batch's one transaction fails, and the creates go one by one.
    await fresh_db.execute("ALTER TABLE jobs ADD CONSTRAINT no_poison CHECK (name <> 'poison')")
    fresh = [create(_id(), name=f"fresh-{i}") for i in range(10)]
    poison = create(_id(), name="poison")
    beyond = create(_id(), retry={"max_attempts": 50})

    await writer.handle_batch(batch_of(*fresh[:5], poison, beyond, *fresh[5:]).records)

    names = dict(await fresh_db.fetch("SELECT job_id, name FROM jobs"))
    assert names == {c["job_id"]: c["spec"]["name"] for c in fresh}
    recorded = {r["command_id"] for r in await fresh_db.fetch(
        "SELECT command_id FROM applied_commands")}
    assert recorded == {c["command_id"] for c in fresh}
    due = writer.due_set
    for cmd in fresh:
        assert await due.redis.hget(due.key("jobs", due.shard_of(cmd["job_id"])),
                                    cmd["job_id"]) == b"1|active"
    assert await due.redis.hget(due.key("jobs", due.shard_of(poison["job_id"])),
                                poison["job_id"]) is None
    dead = await find_messages(kafka_settings(env), JOB_COMMANDS_DLQ,
                               lambda m: m.get("key") == poison["job_id"])
    assert dead[0]["reason"].startswith("cannot apply command: CheckViolationError")
    assert orjson.loads(dead[0]["value"])["command_id"] == poison["command_id"]
    events = await events_for(env, [*fresh, poison, beyond])
    assert {c: e["type"] for c, e in events.items()} == {
        **{c["command_id"]: "job.created" for c in fresh},
        poison["command_id"]: "job.rejected", beyond["command_id"]: "job.rejected"}


async def test_finished_jobs_of_a_status_batch_are_forgotten_with_one_pipeline(
    writer: Writer, fresh_db: asyncpg.Pool[Any], trips: RoundTrips,
) -> None:
    at = utcnow() + timedelta(days=1)
    creates = [create(_id(), schedule={"type": "once", "at": at.isoformat()}) for _ in range(20)]
    await writer.handle_batch(batch_of(*creates).records)
    statuses = Batch()
    for cmd in creates:
        statuses.add(RUNS_STATUS, cmd["job_id"], {
            "run_id": _id(), "job_id": cmd["job_id"], "tenant": "dev", "attempt": 1,
            "status": "succeeded", "final": True, "scheduled_at": at.isoformat(),
            "at": utcnow().isoformat()})
    trips.count = 0

    await writer.handle_batch(statuses.records)

    assert trips.count == 1
    states = {r["state"] for r in await fresh_db.fetch("SELECT state FROM jobs")}
    assert states == {"completed"}
    due = writer.due_set
    for cmd in creates:
        shard = due.shard_of(cmd["job_id"])
        assert await due.redis.hget(due.key("jobs", shard), cmd["job_id"]) == b"1|completed"
        assert await due.redis.hget(due.key("specs", shard), cmd["job_id"]) is None
        assert await due.redis.zscore(due.key("finished", shard), cmd["job_id"]) is not None


async def test_a_one_shot_job_paused_before_its_firing_was_recorded_completes(
    writer: Writer, fresh_db: asyncpg.Pool[Any],
) -> None:
    """The firing of a one-shot job's instant was made, then a pause was sent; the writer,
    behind on statuses, applied the pause first (commands and statuses are two topics). The
    job fired: its final status completes it (the model checker's wrong_state, 2026-11-28).
    A run-now's firing of a paused job before its instant does not."""
    at = utcnow().replace(microsecond=0) + timedelta(days=1)  # firings are whole ms
    fired, run_now = _id(), _id()
    creates = [create(job, schedule={"type": "once", "at": at.isoformat()})
               for job in (fired, run_now)]
    await writer.handle_batch(batch_of(*creates).records)
    await writer.handle_batch(batch_of(command("pause", fired), command("pause", run_now)).records)
    statuses = Batch()
    for job, scheduled in ((fired, at), (run_now, at - timedelta(hours=1))):
        statuses.add(RUNS_STATUS, job, {
            "run_id": _id(), "job_id": job, "tenant": "dev", "attempt": 1,
            "status": "succeeded", "final": True, "scheduled_at": scheduled.isoformat(),
            "at": utcnow().isoformat()})

    await writer.handle_batch(statuses.records)

    states = {r["job_id"]: (r["state"], r["run_count"])
              for r in await fresh_db.fetch("SELECT job_id, state, run_count FROM jobs")}
    assert states == {fired: ("completed", 1), run_now: ("paused", 1)}
    due = writer.due_set
    shard = due.shard_of(fired)
    assert await due.redis.hget(due.key("jobs", shard), fired) == b"1|completed"


@pytest.mark.parametrize("edit", [["patch"], ["pause", "resume"]])
async def test_firings_owed_by_the_old_version_do_not_end_an_edited_plan_early(
    writer: Writer, fresh_db: asyncpg.Pool[Any], edit: list[str],
) -> None:
    """An every-second job with five instants is edited (or paused and resumed) after its first
    two: the two were owed by version 1 (ADR 0036) and their statuses come after the edit (a
    slow call, or statuses behind commands). The made one is a firing made but not the new
    plan's three; the skipped one does not shrink that plan. The job ends with its last
    instant, not one earlier."""
    job = _id()
    now = utcnow()
    # Instants are whole ms; the edit lands ~2.5 s after the create, between +2 s and +3 s.
    created = now.replace(microsecond=now.microsecond // 1000 * 1000) - timedelta(seconds=2.5)
    end = created + timedelta(seconds=5)
    first = {**create(job, schedule={"type": "interval", "every_seconds": 1,
                                     "end_at": end.isoformat()}),
             "issued_at": created.isoformat()}
    await writer.handle_batch(batch_of(first).records)
    for kind in edit:
        fields = {"patch": {"name": "edited"}} if kind == "patch" else {}
        await writer.handle_batch(batch_of(command(kind, job, **fields)).records)
    plan = tuple(await fresh_db.fetchrow(
        "SELECT planned_count, enqueue_at FROM jobs WHERE job_id = $1", job) or ())
    assert plan == (3, None)  # +3 s, +4 s, +5 s

    def ended(second: int, status: str) -> Batch:
        statuses = Batch()
        statuses.add(RUNS_STATUS, job, {
            "run_id": _id(), "job_id": job, "tenant": "dev", "attempt": 1, "status": status,
            "final": True, "scheduled_at": (created + timedelta(seconds=second)).isoformat(),
            "at": utcnow().isoformat()})
        return statuses

    async def state() -> tuple[Any, ...]:
        return tuple(await fresh_db.fetchrow(
            "SELECT state, run_count FROM jobs WHERE job_id = $1", job) or ())

    await writer.handle_batch(ended(1, "succeeded").records)  # owed by version 1
    await writer.handle_batch(ended(2, "skipped").records)  # owed, skipped (overlap)
    for second in (3, 4):
        await writer.handle_batch(ended(second, "succeeded").records)
    assert await state() == ("active", 3)
    await writer.handle_batch(ended(5, "succeeded").records)
    assert await state() == ("completed", 4)


async def test_a_one_shot_job_moved_earlier_waits_for_its_new_instant_not_the_owed_one(
    writer: Writer, fresh_db: asyncpg.Pool[Any],
) -> None:
    """A one-shot job's instant passed and its call is under way when an edit moves the
    instant earlier (both in the past, so the new one fires at once). The old call ending is an
    owed firing (ADR 0059): it does not complete the job; the new instant's firing does."""
    job = _id()
    now = utcnow()
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # instants are whole ms
    old, new = now - timedelta(seconds=1), now - timedelta(seconds=2)
    await writer.handle_batch(batch_of(
        {**create(job, schedule={"type": "once", "at": old.isoformat()}),
         "issued_at": (now - timedelta(seconds=3)).isoformat()}).records)
    await writer.handle_batch(batch_of(command(
        "patch", job, patch={"schedule": {"type": "once", "at": new.isoformat()}})).records)

    async def ended(at: datetime) -> tuple[Any, ...]:
        statuses = Batch()
        statuses.add(RUNS_STATUS, job, {
            "run_id": _id(), "job_id": job, "tenant": "dev", "attempt": 1,
            "status": "succeeded", "final": True, "scheduled_at": at.isoformat(),
            "at": utcnow().isoformat()})
        await writer.handle_batch(statuses.records)
        return tuple(await fresh_db.fetchrow(
            "SELECT state, run_count, next_run_at FROM jobs WHERE job_id = $1", job) or ())

    assert await ended(old) == ("active", 1, new)
    assert await ended(new) == ("completed", 2, None)


async def test_a_slow_calls_status_after_a_later_firings_leaves_the_later_one_as_last_run(
    writer: Writer, fresh_db: asyncpg.Pool[Any],
) -> None:
    """An every-second job overlaps its firings: the call of +1 s is slow and fails after the
    call of +2 s succeeded. The job's last run is the latest instant that ended (+2 s), not
    the last status to arrive; the late failure still counts and raises its alert, and is no
    reason for the next success to be a recovery."""
    job = _id()
    now = utcnow()
    created = now.replace(microsecond=now.microsecond // 1000 * 1000)
    await writer.handle_batch(batch_of(create(
        job, schedule={"type": "interval", "every_seconds": 1}, overlap="allow")).records)
    runs = {second: _id() for second in (1, 2, 3)}

    async def ended(second: int, status: str) -> tuple[Any, ...]:
        statuses = Batch()
        statuses.add(RUNS_STATUS, job, {
            "run_id": runs[second], "job_id": job, "tenant": "dev", "attempt": 1,
            "status": status, "final": True,
            "scheduled_at": (created + timedelta(seconds=second)).isoformat(),
            "at": utcnow().isoformat()})
        await writer.handle_batch(statuses.records)
        return tuple(await fresh_db.fetchrow(
            "SELECT last_run_id, last_run_status, run_count, failure_count FROM jobs"
            " WHERE job_id = $1", job) or ())

    async def alerts() -> list[tuple[str, str]]:
        return [(r["kind"], r["run_id"]) for r in await fresh_db.fetch(
            "SELECT kind, run_id FROM alerts WHERE job_id = $1 ORDER BY at", job)]

    assert await ended(2, "succeeded") == (runs[2], "succeeded", 1, 0)
    assert await ended(1, "failed") == (runs[2], "succeeded", 2, 1)
    assert await alerts() == [("failure", runs[1])]
    assert await ended(3, "succeeded") == (runs[3], "succeeded", 3, 1)
    assert await alerts() == [("failure", runs[1])]


async def test_hostile_and_boundary_commands_in_a_batch_of_creates(
    writer: Writer, fresh_db: asyncpg.Pool[Any], env: dict[str, str],
) -> None:
    good = [create(_id(), name=f"good-{i}") for i in range(3)]
    derived = create(_id(), name="id-from-command")
    del derived["job_id"]  # other services may leave the id to the writer
    twice = _id()
    first, second = create(twice, name="first-of-two"), create(twice, name="second-of-two")
    shared_id = create(_id(), name="owns-the-command-id")
    same_command = {**create(_id(), name="same-command-id"),
                    "command_id": shared_id["command_id"]}
    expired = {**create(_id(), name="too-late"),
               "accept_by": (utcnow() - timedelta(minutes=1)).isoformat()}
    batch = batch_of(*good[:1], first, shared_id, same_command, second, *good[1:])
    poison = {f"garbage-{_id()}": b"\xff\xfe not json", f"array-{_id()}": b"[1, 2, 3]",
              f"no-spec-{_id()}": orjson.dumps({**create(_id()), "spec": None})}
    for key, value in poison.items():
        batch.add(JOB_COMMANDS, key, value)
    batch.add(JOB_COMMANDS, derived["command_id"], derived)
    batch.add(JOB_COMMANDS, expired["job_id"], expired)
    late = batch.records[-1]
    # Kafka appended it after its accept_by: the job service already answered 503.
    batch.records[-1] = dataclasses.replace(late, timestamp_type=kafka.LOG_APPEND_TIME,
                                            timestamp=to_ms(utcnow()))

    await writer.handle_batch(batch.records)

    names = dict(await fresh_db.fetch("SELECT job_id, name FROM jobs"))
    # The first of two creates of one job applies, the second is a conflict; one command id
    # applies once, to the first job that carried it.
    assert names == {**{c["job_id"]: c["spec"]["name"] for c in good},
                     derived["command_id"]: "id-from-command", twice: "first-of-two",
                     shared_id["job_id"]: "owns-the-command-id"}
    events = await events_for(env, [*good, derived, first, second, shared_id, expired])
    assert events[derived["command_id"]]["job_id"] == derived["command_id"]
    assert events[second["command_id"]]["type"] == "job.rejected"
    assert events[expired["command_id"]]["type"] == "job.rejected"
    assert events[expired["command_id"]]["reason"].startswith("expired")
    dead = await find_messages(kafka_settings(env), JOB_COMMANDS_DLQ,
                               lambda m: m.get("key") in poison, count=len(poison))
    assert sorted(d["key"] for d in dead) == sorted(poison)
    assert all(d["reason"].startswith("invalid command") for d in dead)
