"""Kafka clients with the settings duetime relies on, and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from pydantic import BaseModel

from duetime.settings import KafkaSettings
from schemas.topics import CONFIGS, PARTITIONS

log = logging.getLogger(__name__)
LOG_APPEND_TIME = 1  # record timestamp type: set by the broker on append


def encode(message: BaseModel) -> bytes:
    return orjson.dumps(message.model_dump(mode="json", exclude_none=True))


_START_ATTEMPTS = 60  # one a second: a service started before Kafka waits for it


async def _started(make: Callable[[], Any], what: str) -> Any:
    """Start a client, retrying while the broker is unreachable (e.g. Kafka still starting)."""
    for attempt in range(1, _START_ATTEMPTS + 1):
        client = make()
        try:
            await client.start()
            return client
        except KafkaConnectionError as exc:
            with contextlib.suppress(Exception):
                await client.stop()
            if attempt == _START_ATTEMPTS:
                raise
            log.warning("kafka not reachable yet, retrying",
                        extra={"client": what, "attempt": attempt, "error": repr(exc)})
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


@asynccontextmanager
async def producer(settings: KafkaSettings, client_id: str) -> AsyncIterator[AIOKafkaProducer]:
    # aiokafka's defaults are not durable (acks=1, no idempotence): accepted must mean durable.
    p: AIOKafkaProducer = await _started(lambda: AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    ), client_id)
    try:
        yield p
    finally:
        await p.stop()


@asynccontextmanager
async def consumer(
    settings: KafkaSettings, group_id: str, client_id: str, *topics: str, **overrides: Any
) -> AsyncIterator[AIOKafkaConsumer]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": group_id,
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
        "isolation_level": "read_uncommitted",
        "max_poll_records": 500,
    }
    listener = overrides.pop("listener", None)
    options.update(overrides)

    def make() -> AIOKafkaConsumer:
        c = AIOKafkaConsumer(**options)
        if listener is not None:
            c.subscribe(list(topics), listener=listener)
        else:
            c.subscribe(list(topics))
        return c

    c: AIOKafkaConsumer = await _started(make, client_id)
    try:
        yield c
    finally:
        await c.stop()


async def ensure_topics(settings: KafkaSettings, extra: dict[str, int] | None = None) -> list[str]:
    """Create the topics duetime uses (idempotent); returns the ones created."""
    wanted = {**PARTITIONS, **(extra or {})}
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, 1, topic_configs=CONFIGS.get(name))
                   for name, n in wanted.items() if name not in existing]
        if missing:
            # Another instance may have created them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        # Topics created by an older version get today's configs too.
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs)
                                   for name, configs in CONFIGS.items()])
        return [t.name for t in missing]
    finally:
        await admin.close()
