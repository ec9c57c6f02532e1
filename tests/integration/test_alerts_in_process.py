"""Alerts in-process against the real Postgres, Kafka and Redis (ADR 0033).

The writer is handed status batches as its consumer would hand them over, on a database of
its own (fresh_db), so the alerts it records can be counted; the outbox is published to a topic
of the test's own, and the notifier delivers from that topic to a sink. The stack's own
writer and executors never see any of it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook

from duetime import kafka
from duetime.due_set import DueSet
from duetime.lifecycle import Lifecycle
from duetime.timeutil import utcnow
from duetime.webhook_signing import new_secret
from executor.egress import EgressPolicy, client_session
from executor.notifications import DELIVERIES, Notifier, NotifierSettings, consume
from executor.signing import SigningKeys
from schemas.topics import JOB_COMMANDS, RUNS_STATUS
from tests.integration.test_writer_poison import Batch, create
from tests.support.kafka import find_messages, kafka_options, kafka_settings, scratch_topic
from tests.support.sink import Sink, start_site
from writer import alerts
from writer.service import QUERIES, Settings, Writer

ALLOW = "127.0.0.1/32:18900-18999"  # the sinks' ports; 27500-27599 stays blocked


@pytest.fixture
async def producer(env: dict[str, str]) -> AsyncIterator[AIOKafkaProducer]:
    async with kafka.producer(kafka_settings(env), f"test-{uuid.uuid4().hex[:8]}") as p:
        yield p


@pytest.fixture
async def topic(env: dict[str, str]) -> AsyncIterator[str]:
    async with scratch_topic(kafka_settings(env), partitions=1) as name:
        yield name


@pytest.fixture
async def writer(env: dict[str, str], fresh_db: asyncpg.Pool[Any], redis: Redis,
                 due_prefix: str, producer: AIOKafkaProducer) -> Writer:
    settings = Settings(**kafka_options(env), postgres_dsn=env["DUETIME_POSTGRES_DSN"],
                        redis_url=env["DUETIME_REDIS_URL"], due_shards=1)
    return Writer(fresh_db, producer, DueSet(redis, shards=1, prefix=due_prefix), settings)


def final(job_id: str, status: str, minute: int, **fields: Any) -> dict[str, Any]:
    """A run's final status, for the run due at 00:`minute` of 2026-01-01."""
    return {"run_id": f"run-{job_id}-{minute}", "job_id": job_id, "tenant": "dev",
            "attempt": 1, "status": status, "scheduled_at": f"2026-01-01T00:{minute:02d}:00Z",
            "at": utcnow().isoformat(), "finished_at": utcnow().isoformat(), **fields}


async def statuses(writer: Writer, *events: dict[str, Any]) -> None:
    batch = Batch()
    for ev in events:
        batch.add(RUNS_STATUS, ev["job_id"], ev)
    await writer.handle_batch(batch.records)


async def new_job(writer: Writer, **spec: Any) -> str:
    job_id = uuid.uuid4().hex
    batch = Batch()
    batch.add(JOB_COMMANDS, job_id, create(job_id, **spec))
    await writer.handle_batch(batch.records)
    return job_id


async def kinds(pool: asyncpg.Pool[Any], job_id: str) -> list[tuple[str, str]]:
    rows = await pool.fetch("SELECT kind, run_id FROM alerts WHERE job_id = $1 ORDER BY at, kind",
                            job_id)
    return [(r["kind"], r["run_id"]) for r in rows]


async def test_failures_recoveries_and_late_starts_are_recorded_once(
        writer: Writer, fresh_db: asyncpg.Pool[Any]) -> None:
    job_id = await new_job(writer, late_after_seconds=2)
    await statuses(writer, final(job_id, "succeeded", 0, lateness_ms=2000))  # not over 2 s
    # A failure that is retried is not yet the run's last word: no alert.
    await statuses(writer, final(job_id, "failed", 1, final=False, error="HTTP 503",
                                 retry_at="2026-01-01T00:01:05Z"))
    assert await kinds(fresh_db, job_id) == []
    await statuses(writer, final(job_id, "failed", 1, attempt=2, error="HTTP 503"))
    # In one batch, out of order: the failure of minute 2, then its recovery at minute 3.
    recovered, failed = final(job_id, "succeeded", 3, lateness_ms=2001), \
        final(job_id, "timed_out", 2, error="no response within 30s")
    await statuses(writer, recovered, failed)
    await statuses(writer, final(job_id, "succeeded", 4))  # a success after a success
    # Replayed (a rebalance): nothing is recorded twice, nothing is recovered again.
    await statuses(writer, recovered, failed, final(job_id, "succeeded", 4))

    assert sorted(await kinds(fresh_db, job_id)) == sorted([
        ("failure", f"run-{job_id}-1"), ("failure", f"run-{job_id}-2"),
        ("late", f"run-{job_id}-3"), ("recovered", f"run-{job_id}-3")])
    detail = await fresh_db.fetchval(
        "SELECT detail FROM alerts WHERE kind = 'recovered' AND job_id = $1", job_id)
    assert detail["previous_status"] == "timed_out" and detail["status"] == "succeeded"


async def test_the_previous_outcome_is_the_last_final_run_a_cancel_included(
        writer: Writer, fresh_db: asyncpg.Pool[Any]) -> None:
    """As jobs.last_run_status holds it: a cancelled run is not a failure, and a success
    after it recovers from nothing (ADR 0033), in one batch or across batches."""
    job_id = await new_job(writer)
    await statuses(writer, final(job_id, "failed", 0, error="HTTP 500"))
    await statuses(writer, final(job_id, "cancelled", 1, error="job cancelled"))
    await statuses(writer, final(job_id, "succeeded", 2))
    await statuses(writer, final(job_id, "failed", 3, error="HTTP 500"),
                   final(job_id, "cancelled", 4, error="job cancelled"),
                   final(job_id, "succeeded", 5))
    assert [k for k, _ in await kinds(fresh_db, job_id)] == ["failure", "failure"]


async def test_the_outbox_publishes_each_alert_with_its_webhook_then_marks_it(
        env: dict[str, str], writer: Writer, fresh_db: asyncpg.Pool[Any],
        producer: AIOKafkaProducer, topic: str) -> None:
    hook = {"url": "https://example.com/failed", "headers": {"Authorization": "Bearer t"}}
    job_id = await new_job(writer, on_failure=hook)
    await statuses(writer, final(job_id, "failed", 0, error="HTTP 500"))

    assert await alerts.publish(fresh_db, producer, QUERIES, topic) == 1
    assert await alerts.publish(fresh_db, producer, QUERIES, topic) == 0  # marked
    (message,) = await find_messages(kafka_settings(env), topic, lambda m: True)
    assert message["kind"] == "failure" and message["job_id"] == job_id
    assert message["webhook"]["url"] == hook["url"]
    assert message["webhook"]["headers"] == hook["headers"]
    assert message["detail"]["error"] == "HTTP 500"


async def test_the_notifier_delivers_signed_retries_and_never_calls_a_blocked_address(
        env: dict[str, str], producer: AIOKafkaProducer, topic: str) -> None:
    answers = {"/flaky": [503, 200]}
    sink = await Sink(status_for=lambda hit: answers.get(hit.path, [200]).pop(0)
                      if len(answers.get(hit.path, [])) > 1 else 200).start()
    blocked = await Sink(ports=range(27500, 27600)).start()
    secret = new_secret()
    keys = SigningKeys()
    keys.replace([{"tenant": "dev", "secret": secret}])

    def alert(path_url: str, kind: str = "failure", **hook: Any) -> bytes:
        return orjson.dumps({"alert_id": f"al_{uuid.uuid4().hex}", "tenant": "dev",
                             "job_id": "job-1", "run_id": "run-1", "kind": kind,
                             "at": utcnow().isoformat(), "detail": {"error": "HTTP 500"},
                             "webhook": {"url": path_url, **hook}})

    sent = [alert(sink.url("/flaky")), alert(blocked.url("/internal")),
            alert(sink.url("/denied"), headers={"Idempotency-Key": "forged", "X-Team": "a"}),
            b"not json", orjson.dumps({"kind": "failure"})]
    for value in sent:
        await producer.send_and_wait(topic, value, key=b"job-1")
    blocked_before = DELIVERIES.labels("failure", "blocked")._value.get()

    # Three alerts of one job and kind at once: none held back here (Quieting has its own tests).
    settings = NotifierSettings(notify_retry_seconds=0.05, notify_min_interval_seconds=0)
    egress = EgressPolicy.parse(ALLOW)
    lifecycle = Lifecycle("test-notifier")
    async with client_session(egress, 4, 4) as session:
        notifier = Notifier(session, egress, keys, settings)
        task = asyncio.create_task(consume(lifecycle, notifier, kafka_settings(env), "test",
                                           topic, group=f"duetime-test-{uuid.uuid4().hex}"))
        try:
            flaky = await sink.wait_for("/flaky", count=2, timeout=20)
            (denied,) = await sink.wait_for("/denied", timeout=20)
            await asyncio.wait_for(_until(lambda: DELIVERIES.labels(
                "failure", "blocked")._value.get() > blocked_before), 20)
        finally:
            lifecycle.stop.set()
            await asyncio.wait_for(task, 10)
            await sink.stop()
            await blocked.stop()

    # Retried after a 503, with the same id: the receiver can drop a repeat.
    assert flaky[0].headers["webhook-id"] == flaky[1].headers["webhook-id"]
    Webhook(secret).verify(flaky[1].body, flaky[1].headers, json_parse=False)
    assert orjson.loads(flaky[1].body)["detail"] == {"error": "HTTP 500"}
    assert "webhook" not in orjson.loads(flaky[1].body)
    # A header the job may not set never reaches the receiver; its own do.
    assert denied.headers["Idempotency-Key"] == orjson.loads(denied.body)["alert_id"]
    assert denied.headers["X-Team"] == "a"
    assert not blocked.hits


async def _until(check: Any) -> None:
    while not check():
        await asyncio.sleep(0.05)


async def test_old_alerts_expire(writer: Writer, fresh_db: asyncpg.Pool[Any]) -> None:
    job_id = await new_job(writer)
    await statuses(writer, final(job_id, "failed", 0, error="HTTP 500"),
                   final(job_id, "failed", 1, error="HTTP 500"))
    await fresh_db.execute("UPDATE alerts SET at = at - $1::interval WHERE run_id = $2",
                           timedelta(days=31), f"run-{job_id}-0")
    await fresh_db.execute(QUERIES["expire_alerts"], 30)
    assert await kinds(fresh_db, job_id) == [("failure", f"run-{job_id}-1")]


async def test_dead_letters_of_a_known_tenant_are_alerts_once(
        writer: Writer, fresh_db: asyncpg.Pool[Any]) -> None:
    job_id = uuid.uuid4().hex
    batch = Batch()
    batch.add(RUNS_STATUS, job_id, {**final(job_id, "failed", 0), "attempt": 0})
    batch.add(JOB_COMMANDS, job_id, {**create(job_id), "spec": None})
    batch.add(RUNS_STATUS, job_id, b"\xff not json, no tenant")
    await writer.handle_batch(batch.records)
    await writer.handle_batch(batch.records)  # consumed again after a rebalance

    rows = await fresh_db.fetch("SELECT * FROM alerts WHERE kind = 'dlq' ORDER BY at")
    assert [(r["tenant"], r["job_id"], r["detail"]["topic"]) for r in rows] == [
        ("dev", job_id, RUNS_STATUS), ("dev", job_id, JOB_COMMANDS)]
    assert "invalid run status" in rows[0]["detail"]["reason"]
    assert "invalid command" in rows[1]["detail"]["reason"]


class HeldReceiver:
    """An alert receiver that answers nothing until released, noting each alert it got."""

    def __init__(self) -> None:
        self.alert_ids: list[str] = []
        self.arrived, self.release = asyncio.Event(), asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def _held(self, request: web.Request) -> web.Response:
        self.alert_ids.append(orjson.loads(await request.read())["alert_id"])
        self.arrived.set()
        await self.release.wait()
        return web.Response(text="ok")

    async def __aenter__(self) -> HeldReceiver:
        app = web.Application()
        app.router.add_post("/held", self._held)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = await start_site(self.runner)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self.runner is not None
        await self.runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/held"


def slow_alert(url: str, tenant: str = "dev") -> bytes:
    """An alert whose receiver may take up to a minute."""
    return orjson.dumps({"alert_id": f"al_{uuid.uuid4().hex}", "tenant": tenant,
                         "job_id": f"job-{uuid.uuid4().hex[:6]}", "run_id": "run-1",
                         "kind": "failure", "at": utcnow().isoformat(), "detail": {},
                         "webhook": {"url": url, "timeout_seconds": 60}})


async def committed_offset(env: dict[str, str], group: str) -> int:
    async with kafka.admin(kafka_settings(env)) as client:
        offsets = await client.list_consumer_group_offsets(group)
    return max((meta.offset for meta in offsets.values()), default=-1)


@asynccontextmanager
async def notifying(env: dict[str, str], notifier: Notifier, topic: str,
                    group: str) -> AsyncIterator[None]:
    """The notifier consuming `topic` as `group` for the block, stopped after it."""
    lifecycle = Lifecycle("test-notifier")
    task = asyncio.create_task(consume(lifecycle, notifier, kafka_settings(env), "test", topic,
                                       group=group))
    try:
        yield
    finally:
        lifecycle.stop.set()
        await asyncio.wait_for(task, 10)


async def test_an_alert_is_not_held_behind_a_slow_receiver(
        env: dict[str, str], producer: AIOKafkaProducer, topic: str) -> None:
    """A receiver that has not answered holds back its own alert, not the next one: the second
    alert is delivered while the first call still waits (before, each fetched batch waited for
    its slowest delivery, up to ~3 minutes), and the partition is committed past the first only
    once it is answered."""
    fast = await Sink().start()
    group = f"duetime-test-{uuid.uuid4().hex}"
    egress = EgressPolicy.parse(ALLOW)
    async with HeldReceiver() as receiver, client_session(egress, 4, 4) as session:
        notifier = Notifier(session, egress, SigningKeys(), NotifierSettings(
            notify_attempts=1, notify_min_interval_seconds=0))
        await producer.send_and_wait(topic, slow_alert(receiver.url), key=b"k")
        try:
            async with notifying(env, notifier, topic, group):
                await asyncio.wait_for(receiver.arrived.wait(), 20)
                await producer.send_and_wait(topic, slow_alert(fast.url("/fast")), key=b"k")
                # Delivered while the first call still waits for its answer.
                assert len(await fast.wait_for("/fast", timeout=20)) == 1
                assert not receiver.release.is_set()
                assert await committed_offset(env, group) <= 0  # not past the alert held
                receiver.release.set()
                await asyncio.wait_for(_until_async(
                    lambda: _at_least(lambda: committed_offset(env, group), 2)), 20)
        finally:
            receiver.release.set()
            await fast.stop()


async def _at_least(read: Any, value: int) -> bool:
    return bool(await read() >= value)


async def _until_async(check: Any) -> None:
    while not await check():
        await asyncio.sleep(0.1)


async def test_a_tenant_whose_receivers_hang_holds_back_only_its_own_alerts(
        env: dict[str, str], producer: AIOKafkaProducer, topic: str) -> None:
    """ADR 0061: one tenant's receivers that never answer take at most its cap of the
    notifier's slots; its other alerts wait aside, and another tenant's alerts fetched after
    them are delivered meanwhile. Once the receivers answer, every alert set aside is
    delivered and the partition is committed past all of them."""
    fast = await Sink().start()
    group = f"duetime-test-{uuid.uuid4().hex}"
    egress = EgressPolicy.parse(ALLOW)
    async with HeldReceiver() as receiver, client_session(egress, 8, 8) as session:
        # Four slots, at most two for one tenant: the noisy tenant's six alerts come first.
        for _ in range(6):
            await producer.send_and_wait(topic, slow_alert(receiver.url, "noisy"), key=b"k")
        for i in range(3):
            await producer.send_and_wait(topic, slow_alert(fast.url(f"/quiet-{i}"), "quiet"),
                                         key=b"k")
        notifier = Notifier(session, egress, SigningKeys(), NotifierSettings(
            notify_attempts=1, notify_min_interval_seconds=0, notify_concurrency=4,
            notify_tenant_max_in_flight=0.5))
        try:
            async with notifying(env, notifier, topic, group):
                for i in range(3):
                    assert len(await fast.wait_for(f"/quiet-{i}", timeout=20)) == 1
                assert not receiver.release.is_set()
                assert len(receiver.alert_ids) == 2  # the noisy tenant's cap, not every slot
                assert await committed_offset(env, group) <= 0  # not past those held or aside
                receiver.release.set()
                await asyncio.wait_for(_until(lambda: len(receiver.alert_ids) == 6), 20)
                await asyncio.wait_for(_until_async(
                    lambda: _at_least(lambda: committed_offset(env, group), 9)), 20)
        finally:
            receiver.release.set()
            await fast.stop()
    assert len(set(receiver.alert_ids)) == 6  # each alert set aside delivered once
