"""Other services submit commands through Kafka only, and read outcomes back from Kafka."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from schemas.topics import JOB_COMMANDS, JOB_COMMANDS_DLQ, JOB_EVENTS
from tests.support.kafka import find_messages
from tests.support.sink import Sink


def command(**fields: object) -> dict[str, object]:
    return {"command_id": uuid.uuid4().hex, "tenant": "dev",
            "issued_at": datetime.now(UTC).isoformat(), **fields}


async def test_create_through_kafka_fires_and_reports_outcome(
    kafka_producer: AIOKafkaProducer, env: dict[str, str], sink: Sink, path: str
) -> None:
    cmd = command(type="create", spec={
        "name": "from-kafka", "schedule": {"type": "now"},
        "target": {"type": "http", "url": sink.url(path)}})
    await kafka_producer.send_and_wait(JOB_COMMANDS, orjson.dumps(cmd), key=b"")
    events = await find_messages(env["DUETIME_KAFKA_BOOTSTRAP"], JOB_EVENTS,
                                 lambda m: m.get("command_id") == cmd["command_id"])
    assert events[0]["type"] == "job.created"
    assert events[0]["job_id"]
    assert len(await sink.wait_for(path, 1, timeout=10)) == 1


@pytest.mark.parametrize("raw", [
    b"not json at all",
    b'{"type": "create"}',
    b'{"command_id": "x", "type": "explode", "tenant": "dev", "issued_at": "2026-01-01T00:00:00Z"}',
    b"\xff\x00\xfe",
    b"",
])
async def test_malformed_commands_go_to_the_dlq_and_consumption_continues(
    kafka_producer: AIOKafkaProducer, env: dict[str, str], raw: bytes
) -> None:
    marker = uuid.uuid4().hex.encode()
    await kafka_producer.send_and_wait(JOB_COMMANDS, raw, key=marker)
    follow = command(type="cancel", job_id=uuid.uuid4().hex)
    await kafka_producer.send_and_wait(JOB_COMMANDS, orjson.dumps(follow), key=marker)

    bootstrap = env["DUETIME_KAFKA_BOOTSTRAP"]
    outcome = await find_messages(bootstrap, JOB_EVENTS,
                                  lambda m: m.get("command_id") == follow["command_id"])
    assert outcome[0]["type"] == "job.rejected"  # processed after the bad one
    letters = await find_messages(bootstrap, JOB_COMMANDS_DLQ,
                                  lambda m: m.get("key") == marker.decode())
    assert letters[0]["value"] == raw.decode(errors="replace")
    assert letters[0]["reason"].startswith("invalid command")
    assert letters[0]["source_topic"] == JOB_COMMANDS


async def test_a_well_formed_command_that_cannot_apply_is_rejected_by_its_own_outcome(
    kafka_producer: AIOKafkaProducer, env: dict[str, str]
) -> None:
    # Valid JSON and a valid command, but a schedule that never fires: the writer answers it
    # with a `job.rejected` outcome carrying this command's id and the field, and moves on.
    job_id = uuid.uuid4().hex
    bad = command(type="create", job_id=job_id, spec={
        "name": "x", "schedule": {"type": "cron", "expression": "nope"},
        "target": {"type": "http", "url": "http://a/"}})
    follow = command(type="cancel", job_id=job_id)
    for cmd in (bad, follow):
        await kafka_producer.send_and_wait(JOB_COMMANDS, orjson.dumps(cmd), key=job_id.encode())

    bootstrap = env["DUETIME_KAFKA_BOOTSTRAP"]
    outcomes = await find_messages(bootstrap, JOB_EVENTS, lambda m: m.get("job_id") == job_id,
                                   count=2)
    by_command = {m["command_id"]: m for m in outcomes}
    assert by_command[bad["command_id"]]["type"] == "job.rejected"
    assert by_command[bad["command_id"]]["reason"].startswith("schedule.expression")
    assert by_command[follow["command_id"]]["type"] == "job.rejected"  # no job was created
