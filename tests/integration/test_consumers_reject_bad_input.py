"""Malformed messages on the run topics go to `duetime.runs.dlq`; consumption continues."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from schemas.topics import RUNS, RUNS_DLQ, RUNS_STATUS
from tests.support.kafka import find_messages, kafka_settings
from tests.support.sink import Sink

# A run request as the dispatcher writes it, but for one value it never writes.
REQUEST = orjson.dumps({
    "schema_version": 1, "run_id": "r:1", "job_id": "j", "tenant": "t", "job_version": 1,
    "scheduled_at": "2026-01-01T00:00:00Z", "due_at": "2026-01-01T00:00:00Z", "attempt": 1,
    "priority": 5, "retry": {}, "member": "4|j|1|1767225600000|1|s", "dispatched_at":
    "2026-01-01T00:00:00Z", "target": {"type": "http", "url": "http://127.0.0.1:9/x",
                                       "body": "BODY"}})

BAD = [
    b"garbage",
    b"{}",
    b'{"run_id": 1}',
    b"\x00\xff" * 10,
    orjson.dumps({"run_id": "r", "job_id": "j", "tenant": "t", "attempt": 0, "status": "queued",
                  "scheduled_at": "2026-01-01T00:00:00Z", "at": "2026-01-01T00:00:00Z"}),
    orjson.dumps({"run_id": "r", "job_id": "j", "tenant": "t", "attempt": 1, "status": "exploded",
                  "scheduled_at": "2026-01-01T00:00:00Z", "at": "2026-01-01T00:00:00Z"}),
    # What the executor's decoder checks field by field (ADR 0039): text, numbers, instants.
    REQUEST.replace(b'"BODY"', b'{"k": "a\\u0000"}'),
    REQUEST.replace(b'"BODY"', b"18446744073709551616"),
    REQUEST.replace(b'"BODY"', b"null").replace(b'"due_at":"2026', b'"due_at":"9000'),
]


@pytest.mark.parametrize("topic", [RUNS, RUNS_STATUS])
async def test_bad_messages_are_dead_lettered_and_the_pipeline_keeps_working(
    kafka_producer: AIOKafkaProducer, env: dict[str, str], api: httpx.AsyncClient, sink: Sink,
    path: str, topic: str,
) -> None:
    marker = uuid.uuid4().hex
    for raw in BAD:
        await kafka_producer.send_and_wait(topic, raw, key=marker.encode())
    letters = await find_messages(kafka_settings(env), RUNS_DLQ,
                                  lambda m: m.get("key") == marker, count=len(BAD))
    assert len(letters) == len(BAD)
    assert {m["source_topic"] for m in letters} == {topic}
    assert all(m["reason"] for m in letters)
    assert sorted(m["value"] for m in letters) == sorted(b.decode(errors="replace") for b in BAD)

    created = datetime.now(UTC)
    resp = await api.post("/timers", json={"seconds": 1, "url": sink.url(path)})
    assert resp.status_code == 201
    hits = await sink.wait_for(path, 1, timeout=15)
    assert len(hits) == 1 and hits[0].received_at >= created.timestamp() + 1
