"""The writer in-process against the real Postgres, Redis and Kafka: no message stops it.

Each test hands `Writer.handle_batch` a batch mixing good messages with ones that used to
stop every write (ARCHITECTURE rule 8, issue 6 defect 1) and checks the rows in Postgres, the
dead letters and the rejections. The writer loads its due-set entries under a key prefix of
its own, so the stack's dispatcher never fires what these tests create.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from duetime import kafka
from duetime.due_set import DueSet
from duetime.timeutil import utcnow
from schemas.topics import JOB_COMMANDS, JOB_COMMANDS_DLQ, JOB_EVENTS, RUNS_DLQ, RUNS_STATUS
from tests.support.kafka import find_messages, kafka_options, kafka_settings
from writer.service import Settings, Writer, transient, write_pool

LATENESS_2000 = 850_000_000_000  # a once.at of 2000-01-01, fired in 2026


@pytest.fixture
async def writer(env: dict[str, str], redis: Redis) -> AsyncIterator[Writer]:
    tag = uuid.uuid4().hex[:12]
    settings = Settings(**kafka_options(env),
                        postgres_dsn=env["DUETIME_POSTGRES_DSN"],
                        redis_url=env["DUETIME_REDIS_URL"], due_shards=1)
    due = DueSet(redis, shards=1, prefix=f"test{tag}")
    try:
        async with write_pool(settings) as pool, \
                kafka.producer(settings, f"test-{tag}") as producer:
            yield Writer(pool, producer, due, settings)
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{due.prefix}:*")]
        if keys:
            await redis.delete(*keys)


class Batch:
    """ConsumerRecords as the writer's consumer hands them over."""

    def __init__(self) -> None:
        self.records: list[ConsumerRecord[bytes, bytes]] = []

    def add(self, topic: str, key: str, value: bytes | dict[str, Any]) -> None:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        self.records.append(ConsumerRecord(
            topic=topic, partition=0, offset=len(self.records), timestamp=0, timestamp_type=0,
            key=key.encode(), value=raw, checksum=None, serialized_key_size=len(key),
            serialized_value_size=len(raw), headers=()))


def _id() -> str:
    return uuid.uuid4().hex


def status(job_id: str, **fields: Any) -> dict[str, Any]:
    return {"run_id": _id(), "job_id": job_id, "tenant": "dev", "attempt": 1,
            "status": "succeeded", "scheduled_at": "2026-01-01T00:00:00Z",
            "at": utcnow().isoformat(), **fields}


def create(job_id: str, **spec: Any) -> dict[str, Any]:
    body = {"name": "poison-test", "schedule": {"type": "once", "at": "2099-01-01T00:00:00Z"},
            "target": {"type": "http", "url": "http://127.0.0.1:9/hook"}, **spec}
    return {"command_id": _id(), "type": "create", "job_id": job_id, "tenant": "dev",
            "issued_at": utcnow().isoformat(), "spec": body}


async def legacy_job(pg: asyncpg.Pool[Any], schedule: dict[str, Any], state: str) -> str:
    """A job stored before validation refused its values (it can no longer be parsed)."""
    job_id = _id()
    spec = {"name": "legacy", "schedule": schedule,
            "target": {"type": "http", "url": "http://127.0.0.1:9/hook"}}
    now = datetime.now(UTC)
    await pg.execute(
        "INSERT INTO jobs (job_id, tenant, name, spec, schedule_type, target_type, state,"
        " created_command, created_at, updated_at) VALUES ($1, 'dev', 'legacy', $2::jsonb, $3,"
        " 'http', $4, 'legacy', $5, $5)",
        job_id, orjson.dumps(spec).decode(), schedule["type"], state, now)
    return job_id


@pytest.fixture
async def cleanup(pg: asyncpg.Pool[Any]) -> AsyncIterator[list[str]]:
    job_ids: list[str] = []
    yield job_ids
    await pg.execute("DELETE FROM job_runs WHERE job_id = ANY($1::text[])", job_ids)
    await pg.execute("DELETE FROM jobs WHERE job_id = ANY($1::text[])", job_ids)


async def run_row(pg: asyncpg.Pool[Any], run_id: str) -> asyncpg.Record | None:
    return await pg.fetchrow("SELECT * FROM job_runs WHERE run_id = $1", run_id)


async def letters(env: dict[str, str], topic: str, key: str, count: int = 1) -> list[dict[str, Any]]:
    return await find_messages(kafka_settings(env), topic,
                               lambda m: m.get("key") == key, count=count)


async def test_run_statuses_that_stopped_the_writer_are_stored_or_dead_lettered(
    writer: Writer, pg: asyncpg.Pool[Any], env: dict[str, str], cleanup: list[str],
) -> None:
    job = _id()
    # A recurring job whose stored spec no longer parses: advancing it raises in the writer.
    broken = await legacy_job(pg, {"type": "interval", "every_seconds": 60,
                                   "start_at": "0001-01-01T00:00:00Z"}, "active")
    cleanup += [job, broken]
    late = status(job, lateness_ms=LATENESS_2000, started_at="2026-01-01T00:00:00Z",
                  duration_ms=3)
    nul = status(job, status="failed", http_status=200, error="HTTP 500 \x00 boom",
                 response_excerpt="\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    poison = status(broken)
    after = status(job)
    batch = Batch()
    for event in (late, nul, poison, after):
        batch.add(RUNS_STATUS, event["job_id"], event)

    await writer.handle_batch(batch.records)  # returns: nothing escapes

    row = await run_row(pg, late["run_id"])
    assert row is not None and row["lateness_ms"] == LATENESS_2000 and row["status"] == "succeeded"
    row = await run_row(pg, nul["run_id"])
    assert row is not None and row["status"] == "failed"
    assert row["error"] == "HTTP 500 \ufffd boom"
    assert row["response_excerpt"] == "\x89PNG\r\n\x1a\n\ufffd\ufffd\ufffd\rIHDR"
    assert await run_row(pg, after["run_id"]) is not None
    assert await run_row(pg, poison["run_id"]) is None
    dead = await letters(env, RUNS_DLQ, broken)
    assert dead[0]["source_topic"] == RUNS_STATUS
    assert dead[0]["reason"].startswith("cannot apply run status: ValidationError")
    assert orjson.loads(dead[0]["value"])["run_id"] == poison["run_id"]


async def test_commands_that_cannot_apply_are_dead_lettered_and_rejected(
    writer: Writer, pg: asyncpg.Pool[Any], env: dict[str, str], cleanup: list[str],
) -> None:
    good, nul_job, after = _id(), _id(), _id()
    # Run-now of a paused job whose stored `at` is year 1: applying it raises in the writer.
    broken = await legacy_job(pg, {"type": "once", "at": "0001-01-01T00:00:00Z"}, "paused")
    cleanup += [good, nul_job, after, broken]
    nul = create(nul_job, name="bad\x00name")  # e.g. from a Kafka ingress client
    run_now = {"command_id": _id(), "type": "run", "job_id": broken, "tenant": "dev",
               "issued_at": utcnow().isoformat()}
    batch = Batch()
    for cmd in (create(good), nul, run_now, create(after, labels={"k": "v"})):
        batch.add(JOB_COMMANDS, cmd["job_id"], cmd)

    await writer.handle_batch(batch.records)

    names = {r["job_id"]: r["name"] for r in await pg.fetch(
        "SELECT job_id, name FROM jobs WHERE job_id = ANY($1::text[])", [good, nul_job, after])}
    assert names == {good: "poison-test", after: "poison-test"}
    for job_id, reason in ((nul_job, "invalid command"), (broken, "cannot apply command")):
        dead = await letters(env, JOB_COMMANDS_DLQ, job_id)
        assert dead[0]["reason"].startswith(reason), dead[0]["reason"]
        assert dead[0]["source_topic"] == JOB_COMMANDS
    ids = {nul["command_id"]: nul_job, run_now["command_id"]: broken}
    events = await find_messages(kafka_settings(env), JOB_EVENTS,
                                 lambda m: m.get("command_id") in ids, count=2)
    assert {e["command_id"]: (e["type"], e["job_id"]) for e in events} == {
        c: ("job.rejected", j) for c, j in ids.items()}


@pytest.mark.parametrize(("where", "value"), [
    ("payload", "18446744073709551616"), ("payload", "NaN"), ("payload", '{"k\\u0000": 1}'),
    ("labels", '{"team": "a\\u0000"}'), ("name", '"bad\\u0000name"'),
    ("target", '{"type": "http", "url": "http://127.0.0.1:9/hook", "headers": {"X-A": "\\u0000"}}'),
    ("target", '{"type": "http", "url": "http://127.0.0.1:9/hook", "body": -1e400}'),
    ("schedule", '{"type": "once", "at": "9000-01-01T00:00:00Z"}'),
])
async def test_creates_holding_what_cannot_be_stored_are_dead_lettered(
    writer: Writer, pg: asyncpg.Pool[Any], env: dict[str, str], cleanup: list[str],
    where: str, value: str,
) -> None:
    """The decoder checks only the fields that can fail (ADR 0039): each kind of unstorable
    value, in each such field of a create's nested models, is still refused whole."""
    good, bad = _id(), _id()
    cleanup += [good, bad]
    raw = orjson.dumps(create(bad, **{where: "VALUE"})).replace(b'"VALUE"', value.encode())
    batch = Batch()
    batch.add(JOB_COMMANDS, bad, raw)
    batch.add(JOB_COMMANDS, good, create(good))

    await writer.handle_batch(batch.records)

    stored = await pg.fetch("SELECT job_id FROM jobs WHERE job_id = ANY($1::text[])", [good, bad])
    assert [r["job_id"] for r in stored] == [good]
    dead = await letters(env, JOB_COMMANDS_DLQ, bad)
    assert dead[0]["reason"].startswith("invalid command"), dead[0]["reason"]
    assert dead[0]["value"] == raw.decode()


async def test_a_dead_letter_is_cut_to_fit_a_kafka_message(
    writer: Writer, env: dict[str, str],
) -> None:
    key = _id()
    batch = Batch()
    batch.add(RUNS_STATUS, key, b'"' * 900_000)  # escapes to 1.8 MB of JSON
    await writer.handle_batch(batch.records)
    dead = await letters(env, RUNS_DLQ, key)
    assert len(dead[0]["value"]) == 100_000 and "value cut" in dead[0]["reason"]


@pytest.mark.parametrize(("error", "expected"), [
    (KafkaConnectionError(), True),
    (RedisConnectionError(), True),
    (ConnectionResetError(), True),
    (asyncpg.exceptions.ConnectionDoesNotExistError("gone"), True),
    (asyncpg.exceptions.UndefinedColumnError("a migration is missing"), True),
    (asyncpg.exceptions.DiskFullError("disk full"), True),
    (asyncpg.exceptions.NumericValueOutOfRangeError("integer out of range"), False),
    (asyncpg.exceptions.CharacterNotInRepertoireError("0x00"), False),
    (asyncpg.exceptions.UniqueViolationError("dup"), False),
    (MessageSizeTooLargeError(), False),
    (ResponseError("script error"), False),
    (OverflowError("date value out of range"), False),
    (ValueError("bad"), False),
])
def test_only_infrastructure_errors_are_retried(error: BaseException, expected: bool) -> None:
    assert transient(error) is expected


async def test_a_transient_error_still_reaches_the_caller_to_retry(
    writer: Writer, cleanup: list[str],
) -> None:
    job = _id()
    cleanup.append(job)
    await writer.pool.close()  # Postgres "down": the batch must be retried, not dead-lettered
    batch = Batch()
    batch.add(RUNS_STATUS, job, status(job))
    with pytest.raises(asyncpg.InterfaceError):
        await writer.handle_batch(batch.records)
