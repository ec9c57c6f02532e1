"""Issue 7 hole 1: the tenant of an ingress command comes from the authenticated Kafka
principal (its ingress topic), never from the body; only authenticated clients reach Kafka."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from duetime.kafka import client_options
from schemas.topics import JOB_COMMANDS, JOB_EVENTS, ingress_topic
from tests.support.jobs import Cleanup, http_job
from tests.support.kafka import (
    find_messages,
    ingress_settings,
    kafka_options,
    kafka_settings,
    producer_as,
)
from tests.support.sink import Sink


def takeover(job_id: str, attacker_url: str, **fields: Any) -> dict[str, Any]:
    """The hole's exploit: redirect a victim's webhook (with its stored headers) to the attacker."""
    return {"command_id": uuid.uuid4().hex, "type": "patch", "job_id": job_id,
            "issued_at": datetime.now(UTC).isoformat(),
            "patch": {"target": {"url": attacker_url}}, **fields}


@pytest.mark.parametrize("body_tenant", [{"tenant": "dev"}, {}], ids=["claims-dev", "no-tenant"])
async def test_tenant_b_cannot_patch_a_dev_job_through_its_ingress_topic(
    api: httpx.AsyncClient, jobs: Cleanup, env: dict[str, str], sink: Sink, path: str,
    body_tenant: dict[str, str],
) -> None:
    victim_url = sink.url(path)
    job_id = await jobs.create(api, http_job(victim_url, {"type": "delay", "seconds": 3600}))
    cmd = takeover(job_id, sink.url(f"{path}/attacker"), **body_tenant)
    async with producer_as(ingress_settings(env, "tenant-b")) as producer:
        await producer.send_and_wait(ingress_topic("tenant-b"), orjson.dumps(cmd),
                                     key=job_id.encode())

    [outcome] = await find_messages(kafka_settings(env), JOB_EVENTS,
                                    lambda m: m.get("command_id") == cmd["command_id"])
    assert outcome["type"] == "job.rejected"
    assert outcome["tenant"] == "tenant-b"  # the topic's tenant, whatever the body said
    job = (await api.get(f"/jobs/{job_id}")).json()
    assert job["target"]["url"] == victim_url and job["version"] == 1


@pytest.mark.parametrize("topic", [ingress_topic("dev"), JOB_COMMANDS, "duetime.runs.status"])
async def test_an_ingress_principal_writes_its_own_ingress_topic_only(
    env: dict[str, str], topic: str
) -> None:
    async with producer_as(ingress_settings(env, "tenant-b")) as producer:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topic, orjson.dumps(takeover("any", "http://x/")))


async def _refused(options: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(**options, request_timeout_ms=3000, metadata_max_age_ms=3000)
    try:
        with pytest.raises(KafkaError):
            await asyncio.wait_for(producer.start(), 30)
            await producer.send_and_wait(JOB_COMMANDS, b"{}")
    finally:
        await producer.stop()


async def test_an_unauthenticated_client_is_refused(env: dict[str, str]) -> None:
    await _refused({"bootstrap_servers": env["DUETIME_KAFKA_BOOTSTRAP"]})


async def test_a_wrong_password_is_refused(env: dict[str, str]) -> None:
    settings = kafka_settings(env).model_copy(update={"kafka_password": "not-the-password"})
    await _refused(client_options(settings))


async def test_the_services_principal_does_get_in(env: dict[str, str]) -> None:
    # The control for the two tests above: the same client with the right password works.
    async with producer_as(kafka_settings(env)) as producer:
        meta = await producer.client.fetch_all_metadata()
    assert JOB_COMMANDS in meta.topics()
    assert kafka_options(env)["kafka_security_protocol"] == "SASL_PLAINTEXT"


@pytest.mark.parametrize("topic", [JOB_COMMANDS, "tenant-b.orders"])
async def test_an_ingress_create_cannot_aim_a_kafka_target_outside_the_tenants_topics(
    env: dict[str, str], topic: str
) -> None:
    # Ingress commands never pass the job service's validation: the writer applies the policy.
    cmd = {"command_id": uuid.uuid4().hex, "type": "create",
           "issued_at": datetime.now(UTC).isoformat(),
           "spec": {"name": "relay", "schedule": {"type": "now"},
                    "target": {"type": "kafka", "topic": topic, "value": {"type": "cancel"}}}}
    async with producer_as(ingress_settings(env, "dev")) as producer:
        await producer.send_and_wait(ingress_topic("dev"), orjson.dumps(cmd))
    [outcome] = await find_messages(kafka_settings(env), JOB_EVENTS,
                                    lambda m: m.get("command_id") == cmd["command_id"])
    assert outcome["type"] == "job.rejected"
    assert outcome["reason"].startswith("target.topic")
