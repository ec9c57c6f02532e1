"""The executor in-process against the real Redis, Kafka and an HTTP sink.

Each test runs an `Executor` on a due-set key prefix and topics of its own, so the stack's
executor, dispatcher and writer never see its runs (nor it theirs).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaTimeoutError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from duetime import kafka
from duetime.due_set import DueSet, Entry
from duetime.lifecycle import Lifecycle
from duetime.timeutil import now_ms
from executor.service import Consumer, Executor, Settings, Topics, workers
from schemas.events import RunRequested
from tests.support.kafka import find_messages, kafka_options
from tests.support.sink import Sink
from tests.support.waiting import eventually

LEASE_MS = 1500


@dataclass
class Rig:
    settings: Settings
    topics: Topics
    due: DueSet
    producer: AIOKafkaProducer
    session: aiohttp.ClientSession

    def executor(self, due: DueSet | None = None, producer: Any = None) -> Executor:
        return Executor(due or self.due, producer or self.producer, self.session, self.settings,
                        self.topics)

    async def lease_expiry(self, entry: Entry) -> float | None:
        score: float | None = await self.due.redis.zscore(
            self.due.key("leases", self.due.shard_of(entry.job_id)), entry.runkey)
        return score

    async def statuses(self, entry: Entry, count: int = 1) -> list[dict[str, Any]]:
        return await find_messages(self.settings, self.topics.status,
                                   lambda m: m.get("run_id") == entry.run_id, count=count)


@pytest.fixture
async def rig(env: dict[str, str], redis: Redis) -> AsyncIterator[Rig]:
    tag = uuid.uuid4().hex[:12]
    # Under duetime.: the services' principal (which the executor logs in as) may create them.
    topics = Topics(runs=f"duetime.test.{tag}.runs", status=f"duetime.test.{tag}.status",
                    dlq=f"duetime.test.{tag}.dlq")
    settings = Settings(**kafka_options(env),
                        redis_url=env["DUETIME_REDIS_URL"], due_shards=1, lease_ms=LEASE_MS,
                        executor_id=f"test-{tag}")
    admin = kafka.admin_client(settings)
    await admin.start()
    names = [topics.runs, topics.status, topics.dlq]
    await admin.create_topics([NewTopic(name, 1, 1) for name in names])
    due = DueSet(redis, shards=1, prefix=f"test{tag}")
    try:
        async with kafka.producer(settings, f"test-{tag}") as producer, \
                aiohttp.ClientSession() as session:
            yield Rig(settings, topics, due, producer, session)
    finally:
        await admin.delete_topics(names)
        await admin.close()
        keys = [k async for k in redis.scan_iter(match=f"{due.prefix}:*")]
        if keys:
            await redis.delete(*keys)


async def _run_request(due: DueSet, url: str, timeout_seconds: float = 30) -> tuple[RunRequested, Entry]:
    entry = Entry(f"job-{uuid.uuid4().hex[:12]}", 1, now_ms(), 1, 5)
    await due.load(entry.job_id, 1, "active", None, [])
    at = datetime.fromtimestamp(entry.scheduled_ms / 1000, UTC)
    req = RunRequested(run_id=entry.run_id, job_id=entry.job_id, tenant="t", job_version=1,
                       scheduled_at=at, due_at=at, attempt=1, priority=5,
                       target={"type": "http", "url": url,  # type: ignore[arg-type]
                               "timeout_seconds": timeout_seconds},
                       retry={"max_attempts": 1},  # type: ignore[arg-type]
                       member=entry.member(), dispatched_at=at)
    return req, entry


# -- defect 9: a brief error after the call retries what records it, never the call ----------

class _StatusFailsOnce:
    """The real producer, except that the first final status it is asked to send times out."""

    def __init__(self, real: AIOKafkaProducer, topic: str) -> None:
        self.real, self.topic, self.failed = real, topic, False

    async def send_and_wait(self, topic: str, value: bytes, **options: Any) -> Any:
        if topic == self.topic and b'"status":"succeeded"' in value and not self.failed:
            self.failed = True
            raise KafkaTimeoutError()
        return await self.real.send_and_wait(topic, value, **options)


class _CompleteFailsOnce(DueSet):
    failed = False

    async def complete(self, entry: Entry, retry: Entry | None, retry_at_ms: int,
                       done_ttl_s: int = 7 * 86400) -> None:
        if not self.failed:
            self.failed = True
            raise RedisConnectionError("Connection reset by peer")
        await super().complete(entry, retry, retry_at_ms, done_ttl_s)


async def test_a_brief_kafka_and_redis_error_after_the_call_does_not_fire_it_again(
    rig: Rig, sink: Sink, path: str,
) -> None:
    due = _CompleteFailsOnce(rig.due.redis, 1, rig.due.prefix)
    executor = rig.executor(due, _StatusFailsOnce(rig.producer, rig.topics.status))
    req, entry = await _run_request(due, sink.url(path))
    assert await due.claim(entry, req.member, executor.id, now_ms(), LEASE_MS) == "ok"

    await asyncio.wait_for(executor.execute(req, entry, req.model_dump_json().encode()), 20)

    assert due.failed and executor.producer.failed
    assert [s["status"] for s in await rig.statuses(entry)] == ["succeeded"]
    assert await due.claim(entry, req.member, "another", now_ms(), LEASE_MS) == "done"
    assert await rig.lease_expiry(entry) is None  # completed: nothing left to requeue
    assert len(sink.hits_for(path)) == 1


# -- defect 7: leases and abort watching last until the drain is over --------------------------

async def _start(rig: Rig, kafka_producer: AIOKafkaProducer,
                 url: str) -> tuple[Lifecycle, asyncio.Task[None], Entry]:
    lifecycle = Lifecycle("test-executor", grace_seconds=15)
    executor = rig.executor()
    consumer = Consumer(lifecycle, executor, rig.settings, group=f"duetime-{rig.topics.runs}")
    service = asyncio.create_task(lifecycle.supervise(workers(executor, consumer)))
    req, entry = await _run_request(rig.due, url)
    await kafka_producer.send_and_wait(rig.topics.runs, kafka.encode(req),
                                       key=req.job_id.encode())
    return lifecycle, service, entry


async def test_sigterm_keeps_renewing_the_lease_of_a_draining_call(
    rig: Rig, kafka_producer: AIOKafkaProducer, make_sink: Callable[..., Awaitable[Sink]],
    path: str,
) -> None:
    slow = await make_sink(delay_seconds=4)
    lifecycle, service, entry = await _start(rig, kafka_producer, slow.url(path))
    await slow.wait_for(path, 1, timeout=30)
    lifecycle.stop.set()  # what SIGTERM does
    stopped = now_ms()

    async def renewed_after_stop() -> bool:
        expiry = await rig.lease_expiry(entry)
        return expiry is not None and expiry > stopped + LEASE_MS + 1000

    # Without renewal the lease would lapse mid-call and another executor would fire it again.
    await eventually(renewed_after_stop, timeout=3.5)
    await asyncio.wait_for(service, timeout=15)
    [running, final] = await rig.statuses(entry, 2)
    assert (running["status"], final["status"]) == ("running", "succeeded")
    assert await rig.lease_expiry(entry) is None
    assert len(slow.hits_for(path)) == 1


async def test_a_cancel_during_the_drain_aborts_the_call(
    rig: Rig, kafka_producer: AIOKafkaProducer, make_sink: Callable[..., Awaitable[Sink]],
    path: str,
) -> None:
    slow = await make_sink(delay_seconds=8)
    lifecycle, service, entry = await _start(rig, kafka_producer, slow.url(path))
    await slow.wait_for(path, 1, timeout=30)
    lifecycle.stop.set()
    await asyncio.sleep(0.3)  # the drain has begun
    await rig.due.redis.set(rig.due.cancel_key(entry.job_id), entry.version + 1)
    await asyncio.wait_for(service, timeout=4)  # well before the sink would answer
    final = (await rig.statuses(entry, 2))[-1]
    assert (final["status"], final.get("error")) == ("cancelled", "job cancelled")


# -- ADR 0045: the call runs in the attempt's own task -----------------------------------------

async def test_the_call_starts_in_the_attempts_own_task(
    rig: Rig, sink: Sink, path: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A child task would start the call a turn of the loop after the verdict: at 200/s that
    # turn waits behind the other attempts' work.
    from executor.targets import fire_http as real

    callers: list[asyncio.Task[Any] | None] = []

    async def recording(*args: Any) -> Any:
        callers.append(asyncio.current_task())
        return await real(*args)

    monkeypatch.setattr("executor.service.fire_http", recording)
    executor = rig.executor()
    req, entry = await _run_request(rig.due, sink.url(path))
    assert await rig.due.claim(entry, req.member, executor.id, now_ms(), LEASE_MS) == "ok"
    attempt = asyncio.create_task(executor.execute(req, entry, b"{}"))
    await asyncio.wait_for(attempt, 20)
    assert callers == [attempt]
    assert [s["status"] for s in await rig.statuses(entry)] == ["succeeded"]
    assert len(sink.hits_for(path)) == 1


class _FlagsAfter(DueSet):
    """Reads the abort flags only once `ready` is set: a watch whose answer comes late."""

    ready: asyncio.Event

    async def abort_flags(self, runs: Any) -> list[tuple[int | None, bool]]:
        await self.ready.wait()
        return await super().abort_flags(runs)


async def test_an_abort_read_after_the_call_ended_leaves_its_writes_alone(
    rig: Rig, make_sink: Callable[..., Awaitable[Sink]], path: str,
) -> None:
    slow = await make_sink(delay_seconds=1)
    due = _FlagsAfter(rig.due.redis, 1, rig.due.prefix)
    due.ready = asyncio.Event()
    executor = rig.executor(due)
    req, entry = await _run_request(due, slow.url(path))
    assert await due.claim(entry, req.member, executor.id, now_ms(), LEASE_MS) == "ok"
    attempt = asyncio.create_task(executor.execute(req, entry, b"{}"))

    async def in_call() -> bool:
        return entry.runkey in executor.calls

    async def call_over() -> bool:
        return entry.runkey not in executor.calls

    await eventually(in_call, timeout=10, interval=0.01)
    watch = asyncio.create_task(executor.watch_aborts())  # its snapshot holds the call
    await eventually(call_over, timeout=10, interval=0.001)
    await due.redis.set(due.cancel_key(entry.job_id), entry.version + 1)
    due.ready.set()
    await asyncio.wait_for(watch, 10)
    await asyncio.wait_for(attempt, 20)  # not cancelled in the middle of recording the call
    assert [s["status"] for s in await rig.statuses(entry, 2)] == ["running", "succeeded"]
    assert await due.claim(entry, req.member, "another", now_ms(), LEASE_MS) == "done"


async def test_a_stop_that_meets_an_abort_still_stops_the_attempt(
    rig: Rig, make_sink: Callable[..., Awaitable[Sink]], path: str,
) -> None:
    slow = await make_sink(delay_seconds=8)
    executor = rig.executor()
    req, entry = await _run_request(rig.due, slow.url(path))
    assert await rig.due.claim(entry, req.member, executor.id, now_ms(), LEASE_MS) == "ok"
    attempt = asyncio.create_task(executor.execute(req, entry, b"{}"))
    await slow.wait_for(path, 1, timeout=10)
    await rig.due.redis.set(rig.due.cancel_key(entry.job_id), entry.version + 1)
    await executor.watch_aborts()  # cancels the attempt for the abort...
    attempt.cancel()  # ...and a drain's deadline does too, before the attempt runs again
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(attempt, 5)
    assert executor.calls == {} and executor.aborted == {}
