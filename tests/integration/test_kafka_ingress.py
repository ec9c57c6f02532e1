"""Other services submit commands through Kafka: each tenant on its own ingress topic,
`duetime.ingress.<tenant>`, logged in as its ingress principal; outcomes come back on
`duetime.jobs.events`. The tenant is the topic's, never the body's (ADR 0015)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from schemas.topics import JOB_COMMANDS_DLQ, JOB_EVENTS, ingress_topic
from tests.support.kafka import find_messages, ingress_settings, kafka_settings, producer_as
from tests.support.sink import Sink

DEV_INGRESS = ingress_topic("dev")


def command(**fields: object) -> dict[str, object]:
    return {"command_id": uuid.uuid4().hex, "issued_at": datetime.now(UTC).isoformat(), **fields}


@pytest.fixture
async def dev_ingress(env: dict[str, str]) -> AsyncIterator[AIOKafkaProducer]:
    async with producer_as(ingress_settings(env, "dev")) as producer:
        yield producer


async def test_create_through_kafka_fires_and_reports_outcome(
    dev_ingress: AIOKafkaProducer, env: dict[str, str], sink: Sink, path: str
) -> None:
    # No tenant in the body: the writer takes it from the topic.
    cmd = command(type="create", spec={
        "name": "from-kafka", "schedule": {"type": "now"},
        "target": {"type": "http", "url": sink.url(path)}})
    await dev_ingress.send_and_wait(DEV_INGRESS, orjson.dumps(cmd), key=b"")
    events = await find_messages(kafka_settings(env), JOB_EVENTS,
                                 lambda m: m.get("command_id") == cmd["command_id"])
    assert events[0]["type"] == "job.created"
    assert events[0]["tenant"] == "dev"
    assert events[0]["job_id"]
    assert len(await sink.wait_for(path, 1, timeout=10)) == 1


async def test_a_body_tenant_that_agrees_with_the_topic_is_accepted(
    dev_ingress: AIOKafkaProducer, env: dict[str, str], sink: Sink, path: str
) -> None:
    cmd = command(type="create", tenant="dev", spec={
        "name": "from-kafka", "schedule": {"type": "now"},
        "target": {"type": "http", "url": sink.url(path)}})
    await dev_ingress.send_and_wait(DEV_INGRESS, orjson.dumps(cmd), key=b"")
    events = await find_messages(kafka_settings(env), JOB_EVENTS,
                                 lambda m: m.get("command_id") == cmd["command_id"])
    assert events[0]["type"] == "job.created"
    assert len(await sink.wait_for(path, 1, timeout=10)) == 1


@pytest.mark.parametrize("raw", [
    b"not json at all",
    b'{"type": "create"}',
    b'{"command_id": "x", "type": "explode", "issued_at": "2026-01-01T00:00:00Z"}',
    b'{"command_id": "y", "type": "cancel", "job_id": "j", "tenant": "tenant-b",'
    b' "issued_at": "2026-01-01T00:00:00Z"}',
    b"\xff\x00\xfe",
    b"",
])
async def test_malformed_commands_go_to_the_dlq_and_consumption_continues(
    dev_ingress: AIOKafkaProducer, env: dict[str, str], raw: bytes
) -> None:
    marker = uuid.uuid4().hex.encode()
    await dev_ingress.send_and_wait(DEV_INGRESS, raw, key=marker)
    follow = command(type="cancel", job_id=uuid.uuid4().hex)
    await dev_ingress.send_and_wait(DEV_INGRESS, orjson.dumps(follow), key=marker)

    bootstrap = kafka_settings(env)
    outcome = await find_messages(bootstrap, JOB_EVENTS,
                                  lambda m: m.get("command_id") == follow["command_id"])
    assert outcome[0]["type"] == "job.rejected"  # processed after the bad one
    letters = await find_messages(bootstrap, JOB_COMMANDS_DLQ,
                                  lambda m: m.get("key") == marker.decode())
    assert letters[0]["value"] == raw.decode(errors="replace")
    assert letters[0]["reason"].startswith("invalid command")
    assert letters[0]["source_topic"] == DEV_INGRESS


async def test_a_well_formed_command_that_cannot_apply_is_rejected_by_its_own_outcome(
    dev_ingress: AIOKafkaProducer, env: dict[str, str]
) -> None:
    # Valid JSON and a valid command, but a schedule that never fires: the writer answers it
    # with a `job.rejected` outcome carrying this command's id and the field, and moves on.
    job_id = uuid.uuid4().hex
    bad = command(type="create", job_id=job_id, spec={
        "name": "x", "schedule": {"type": "cron", "expression": "nope"},
        "target": {"type": "http", "url": "http://a/"}})
    follow = command(type="cancel", job_id=job_id)
    for cmd in (bad, follow):
        await dev_ingress.send_and_wait(DEV_INGRESS, orjson.dumps(cmd), key=job_id.encode())

    bootstrap = kafka_settings(env)
    outcomes = await find_messages(bootstrap, JOB_EVENTS, lambda m: m.get("job_id") == job_id,
                                   count=2)
    by_command = {m["command_id"]: m for m in outcomes}
    assert by_command[bad["command_id"]]["type"] == "job.rejected"
    assert by_command[bad["command_id"]]["reason"].startswith("schedule.expression")
    assert by_command[follow["command_id"]]["type"] == "job.rejected"  # no job was created
