"""Issue 7 hole 1: a Kafka target can no longer publish into duetime's own topics (forged
commands, statuses or run requests), nor outside its tenant's allowed topics — refused when
the job is validated (422) and again when it fires (failed, not retried)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAuthorizationFailedError
from redis.asyncio import Redis

from duetime import kafka
from duetime.due_set import DueSet, Entry
from duetime.timeutil import now_ms
from executor.service import Executor, Settings, Topics
from schemas.events import RunRequested
from tests.support.jobs import Cleanup
from tests.support.kafka import (
    admin_settings,
    find_messages,
    kafka_options,
    kafka_settings,
    producer_as,
    target_settings,
)
from tests.support.stack import ROOT

INTERNAL = ["duetime.jobs.commands", "duetime.runs.status", "duetime.runs", "duetime.ingress.dev",
            "__consumer_offsets"]


def kafka_job(topic: str) -> dict[str, Any]:
    return {"name": "to-kafka", "schedule": {"type": "delay", "seconds": 60},
            "target": {"type": "kafka", "topic": topic, "value": {"type": "patch"}}}


def topic_error(resp: httpx.Response) -> str:
    assert resp.status_code == 422, resp.text
    [error] = [e for e in resp.json()["errors"] if e["field"] == "target.topic"]
    return str(error["message"])


@pytest.mark.parametrize("topic", INTERNAL)
async def test_a_job_whose_kafka_target_is_an_internal_topic_is_refused(
    api: httpx.AsyncClient, topic: str
) -> None:
    assert "internal" in topic_error(await api.post("/jobs", json=kafka_job(topic)))


async def test_a_topic_outside_the_tenants_allowlist_is_refused(api: httpx.AsyncClient,
                                                                api_b: httpx.AsyncClient) -> None:
    # Tenant dev may use "dev.*" (the default); tenant-b's topics and unprefixed ones are not its.
    for topic in ("tenant-b.orders", "orders", "devx.orders"):
        assert "not in this tenant's allowed topics" in topic_error(
            await api.post("/jobs", json=kafka_job(topic)))
    assert "not in this tenant's allowed topics" in topic_error(
        await api_b.post("/jobs", json=kafka_job("dev.orders")))


async def test_editing_a_job_onto_an_internal_topic_is_refused(
    api: httpx.AsyncClient, jobs: Cleanup
) -> None:
    job_id = await jobs.create(api, kafka_job("dev.orders"))
    assert "internal" in topic_error(await api.put(f"/jobs/{job_id}",
                                                   json=kafka_job("duetime.jobs.commands")))
    assert "internal" in topic_error(await api.patch(
        f"/jobs/{job_id}", json={"target": {"topic": "duetime.runs.status"}}))
    job = (await api.get(f"/jobs/{job_id}")).json()
    assert job["target"]["topic"] == "dev.orders"


@pytest.mark.parametrize("topic", ["duetime.jobs.commands", "duetime.runs.status", "duetime.runs"])
async def test_the_target_principal_cannot_write_internal_topics(env: dict[str, str],
                                                                 topic: str) -> None:
    async with producer_as(target_settings(env)) as producer:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topic, b'{"forged": true}', key=b"x")


async def test_the_target_principal_writes_tenant_topics(env: dict[str, str]) -> None:
    # The control for the test above: the principal works, only internal topics are denied.
    topic = f"dev.security.{uuid.uuid4().hex[:8]}"
    async with kafka.admin(admin_settings(env)) as admin:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    async with producer_as(target_settings(env)) as producer:
        await producer.send_and_wait(topic, b'{"ok": true}')
    assert await find_messages(admin_settings(env), topic, lambda m: m.get("ok") is True)


@dataclass
class Rig:
    executor: Executor
    due: DueSet
    settings: Settings
    topics: Topics


@pytest.fixture
async def narrowed(env: dict[str, str], redis: Redis) -> AsyncIterator[Rig]:
    """An executor whose operator narrowed tenant dev's allowlist to "dev.narrow.*" after jobs
    were validated against the default "dev.*"."""
    tag = uuid.uuid4().hex[:12]
    topics = Topics(runs=f"duetime.test.{tag}.runs", status=f"duetime.test.{tag}.status",
                    dlq=f"duetime.test.{tag}.dlq")
    settings = Settings(**kafka_options(env), redis_url=env["DUETIME_REDIS_URL"], due_shards=1,
                        executor_id=f"test-{tag}",
                        kafka_target_topics={"dev": ["dev.narrow.*"]})
    names = [topics.runs, topics.status, topics.dlq]
    due = DueSet(redis, shards=1, prefix=f"test{tag}")
    async with kafka.admin(kafka_settings(env)) as admin:
        await admin.create_topics([NewTopic(name, 1, 1) for name in names])
        try:
            async with kafka.producer(settings, f"test-{tag}") as producer, \
                    kafka.producer(target_settings(env), f"test-{tag}-targets") as targets, \
                    aiohttp.ClientSession() as session:
                yield Rig(Executor(due, producer, session, settings, topics,
                                   target_producer=targets), due, settings, topics)
        finally:
            await admin.delete_topics(names)
            keys = [k async for k in redis.scan_iter(match=f"{due.prefix}:*")]
            if keys:
                await redis.delete(*keys)


@pytest.mark.parametrize("topic", ["dev.wide.orders", "duetime.jobs.commands"])
async def test_a_job_validated_before_the_allowlist_changed_is_refused_at_fire_time(
    narrowed: Rig, topic: str
) -> None:
    entry = Entry(f"job-{uuid.uuid4().hex[:12]}", 1, now_ms(), 1, 5)
    await narrowed.due.load(entry.job_id, 1, "active", None, [])
    at = datetime.fromtimestamp(entry.scheduled_ms / 1000, UTC)
    req = RunRequested(run_id=entry.run_id, job_id=entry.job_id, tenant="dev", job_version=1,
                       scheduled_at=at, due_at=at, attempt=1, priority=5,
                       target={"type": "kafka", "topic": topic,  # type: ignore[arg-type]
                               "value": {"forged": True}},
                       retry={"max_attempts": 5},  # type: ignore[arg-type]
                       member=entry.member(), dispatched_at=at)
    assert await narrowed.due.claim(entry, req.member, narrowed.executor.id, now_ms(),
                                    10_000) == "ok"

    await narrowed.executor.execute(req, entry, req.model_dump_json().encode())

    [final] = await find_messages(narrowed.settings, narrowed.topics.status,
                                  lambda m: m.get("run_id") == entry.run_id
                                  and m.get("status") == "failed")
    assert final["final"] is True and final.get("retry_at") is None  # 5 attempts allowed: none
    assert final["error"].startswith("refused by the Kafka target policy")
    assert topic in final["error"]


@pytest.mark.skipif(os.environ.get("DUETIME_TEST_ENGINE") == "containers",
                    reason="the compose stack's tenants are fixed at start")
async def test_a_dotted_tenant_has_no_default_topics(env: dict[str, str]) -> None:
    # ADR 0051: tenant names may contain dots, so "<tenant>.*" for both would let tenant dev
    # publish into "dev.<x>.orders" of tenant "dev.<x>". The dotted tenant gets no default topics
    # (the operator lists them, and then they leave dev's default); dev keeps "dev.*".
    tenant = f"dev.n{uuid.uuid4().hex[:8]}"
    created = subprocess.run([sys.executable, "-m", "duetime", "keys", "create", "--tenant", tenant],
                             cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    key_id = created.stderr.split("created key ")[1].split()[0]
    try:
        async with httpx.AsyncClient(base_url=env["DUETIME_URL"], timeout=30, headers={
                "Authorization": f"Bearer {created.stdout.strip()}"}) as nested:
            for topic in (f"{tenant}.orders", "orders"):
                assert "no default topics" in topic_error(
                    await nested.post("/jobs", json=kafka_job(topic)))
        assert "no default topics" in created.stderr  # `keys create` says so
    finally:
        subprocess.run([sys.executable, "-m", "duetime", "keys", "revoke", key_id], cwd=ROOT,
                       capture_output=True, timeout=60, check=True)
