"""Kafka from tests: clients log in like the services do, with the settings in .stack/env."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from duetime.kafka import client_options
from duetime.settings import KafkaSettings


def kafka_options(env: dict[str, str], username: str | None = None,
                  password: str | None = None) -> dict[str, Any]:
    """Settings fields for a client of the stack's Kafka: the services' principal by default."""
    return {
        "kafka_bootstrap": env["DUETIME_KAFKA_BOOTSTRAP"],
        "kafka_security_protocol": env.get("DUETIME_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        "kafka_sasl_mechanism": env.get("DUETIME_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
        "kafka_username": username or env.get("DUETIME_KAFKA_USERNAME"),
        "kafka_password": password or env.get("DUETIME_KAFKA_PASSWORD"),
    }


def kafka_settings(env: dict[str, str]) -> KafkaSettings:
    return KafkaSettings(**kafka_options(env))


def admin_settings(env: dict[str, str]) -> KafkaSettings:
    """The stack's super user: what an operator uses to create tenant topics."""
    return KafkaSettings(**kafka_options(env, env.get("DUETIME_KAFKA_ADMIN_USERNAME"),
                                         env.get("DUETIME_KAFKA_ADMIN_PASSWORD")))


def target_settings(env: dict[str, str]) -> KafkaSettings:
    """The principal the executor publishes Kafka targets as."""
    return KafkaSettings(**kafka_options(env, env.get("DUETIME_KAFKA_TARGET_USERNAME"),
                                         env.get("DUETIME_KAFKA_TARGET_PASSWORD")))


def ingress_settings(env: dict[str, str], tenant: str) -> KafkaSettings:
    """Tenant `tenant`'s ingress principal, ingress-<tenant>."""
    passwords = dict(item.split(":", 1)
                     for item in env.get("DUETIME_KAFKA_INGRESS_PASSWORDS", "").split(",") if item)
    return KafkaSettings(**kafka_options(env, f"ingress-{tenant}", passwords.get(tenant)))


async def find_messages(kafka: KafkaSettings, topic: str, match: Callable[[dict[str, Any]], bool],
                        count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Read `topic` from the start until `count` JSON messages satisfy `match`."""
    consumer = AIOKafkaConsumer(topic, **client_options(kafka), auto_offset_reset="earliest",
                                group_id=f"duetime-test-{uuid.uuid4().hex}",
                                enable_auto_commit=False)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for msg in messages:
                    try:
                        value = orjson.loads(msg.value or b"")
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(value, dict) and match(value):
                        found.append(value)
    finally:
        await consumer.stop()
    return found


@asynccontextmanager
async def producer_as(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    """A plain producer logged in as `kafka`'s principal (acks=all, no retries of its own)."""
    producer = AIOKafkaProducer(**client_options(kafka), acks="all", request_timeout_ms=10_000)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def scratch_topic(kafka: KafkaSettings, partitions: int = 1) -> AsyncIterator[str]:
    """A topic of one test's own, deleted after it; under `duetime.`, which the services'
    principal may create (the broker creates no topic by itself)."""
    from aiokafka.admin import NewTopic

    from duetime.kafka import admin_client

    name = f"duetime.test.{uuid.uuid4().hex[:12]}"
    admin = admin_client(kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()
