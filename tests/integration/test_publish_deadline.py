"""A 503 from the job service: when it can take effect, and why a keyed retry is one job
(defect 11, ADR 0012, docs/guarantees-notes-clocks.md).

The job service's ASGI app runs in-process with the real Kafka producer, wrapped so that Kafka's
answer (or the append itself) comes late; the stack's writer, dispatcher and executor apply the
commands and fire the job at the sink, like any other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from duetime import kafka
from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.settings import KafkaSettings
from duetime.tenant_assertion import TenantAssertions
from job_service.api import build_app
from job_service.idempotency import IdempotencyStore
from job_service.publisher import CommandPublisher
from tests.support.gateway import AsTenant
from tests.support.kafka import kafka_options
from tests.support.sink import Sink
from tests.support.waiting import eventually

TIMEOUT_S = 0.5  # the publish timeout: accept_by = now + 0.5 s
SKEW_S = 0.3  # the broker clock skew tolerated: the answer is awaited until accept_by + 0.3 s


class LateKafka:
    """The real producer, made late on demand: its answer (`ack_delay`) or the send itself
    (`send_delay`, so the broker appends after `accept_by`)."""

    def __init__(self, real: AIOKafkaProducer) -> None:
        self.real = real
        self.ack_delay = self.send_delay = 0.0
        self.commands: list[dict[str, Any]] = []
        self.pending: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, value: bytes, **options: Any) -> asyncio.Future[Any]:
        self.commands.append(orjson.loads(value))
        await asyncio.sleep(self.send_delay)
        appended: asyncio.Future[Any] = await self.real.send(topic, value, **options)
        if not self.ack_delay:
            return appended
        late = asyncio.ensure_future(self._late(appended, self.ack_delay))
        self.pending.append(late)
        return late

    @staticmethod
    async def _late(appended: asyncio.Future[Any], delay: float) -> Any:
        meta = await appended
        await asyncio.sleep(delay)
        return meta


@pytest.fixture
async def late_kafka(env: dict[str, str]) -> AsyncIterator[LateKafka]:
    settings = KafkaSettings(**kafka_options(env))
    async with kafka.producer(settings, f"test-{uuid.uuid4().hex[:8]}") as producer:
        wrapper = LateKafka(producer)
        yield wrapper
        await asyncio.gather(*wrapper.pending, return_exceptions=True)


@pytest.fixture
async def job_service(late_kafka: LateKafka, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async def lookup(job_id: str) -> None:
        return None

    publisher = CommandPublisher(late_kafka, TIMEOUT_S, max_skew_seconds=SKEW_S)
    assertions = TenantAssertions("test-publish-deadline-gateway-secret")
    app = build_app(Lifecycle("job_service"), publisher,
                    IdempotencyStore(redis, prefix=f"test{uuid.uuid4().hex[:8]}"), lookup,
                    JobIds("test-publish-deadline-secret"), assertions)
    tenant = f"clock-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://js",
                                 auth=AsTenant(assertions, tenant)) as client:
        yield client


async def _one_job_fired_once(pg: asyncpg.Pool[Any], sink: Sink, path: str,
                              job_id: str) -> str:
    """Wait for the job to fire and complete; return the id of the command that created it."""
    async def completed() -> asyncpg.Record | None:
        row: asyncpg.Record | None = await pg.fetchrow(
            "SELECT state, created_command FROM jobs WHERE job_id = $1", job_id)
        return row if row is not None and row["state"] == "completed" else None

    row = await eventually(completed, timeout=30, interval=0.2)
    runs = await pg.fetchval("SELECT count(*) FROM job_runs WHERE job_id = $1", job_id)
    assert (runs, len(sink.hits_for(path))) == (1, 1)
    created: str = row["created_command"]
    return created


@pytest.mark.parametrize("late", ["ack", "append"])
async def test_a_503_then_a_retry_with_the_same_key_is_one_job_and_one_firing(
    late: str, job_service: httpx.AsyncClient, late_kafka: LateKafka, pg: asyncpg.Pool[Any],
    sink: Sink, path: str,
) -> None:
    at = datetime.now(UTC) + timedelta(seconds=3)
    spec = {"name": "publish-deadline", "schedule": {"type": "once", "at": at.isoformat()},
            "target": {"type": "http", "url": sink.url(path)}}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    if late == "ack":  # appended at once, but Kafka's answer comes after accept_by + skew
        late_kafka.ack_delay = TIMEOUT_S + SKEW_S + 0.5
    else:  # appended after accept_by: Kafka's answer says so
        late_kafka.send_delay = TIMEOUT_S + 0.1

    first = await job_service.post("/jobs", json=spec, headers=key)

    assert first.status_code == 503, first.text
    assert first.headers["Retry-After"]
    late_kafka.ack_delay = late_kafka.send_delay = 0.0
    retry = await job_service.post("/jobs", json=spec, headers=key)
    assert retry.status_code == 202, retry.text
    job_id = retry.json()["job_id"]
    created_by = await _one_job_fired_once(pg, sink, path, job_id)
    [first_command, retry_command] = late_kafka.commands
    assert {first_command["job_id"], retry_command["job_id"]} == {job_id}
    if late == "ack":
        # The documented case: appended in time, answer lost or late. The 503 said the command
        # may still take effect, and it did; the retry was a replay of the same job.
        assert "may still take effect" in first.json()["detail"]
        assert created_by == first_command["command_id"]
    else:
        # Kafka's answer said "appended after accept_by": the writer refused it, as promised.
        assert "was not accepted" in first.json()["detail"]
        assert created_by == retry_command["command_id"]
