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
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaConnectionError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TopicAlreadyExistsError,
    UnknownProducerId,
)
from aiokafka.helpers import create_ssl_context
from prometheus_client import Counter
from pydantic import BaseModel

from duetime.settings import KafkaSettings
from schemas.topics import PARTITIONS, configs_for

log = logging.getLogger(__name__)
LOG_APPEND_TIME = 1  # record timestamp type: set by the broker on append
RENEWED = Counter("duetime_kafka_producers_renewed_total",
                  "Producers replaced after an error they cannot recover from", ["client"])


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Bootstrap and authentication options every client is built with (docs/security.md)."""
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap,
                               "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol != "PLAINTEXT":
        options.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                       sasl_plain_username=settings.kafka_username,
                       sasl_plain_password=settings.kafka_password)
    if settings.kafka_security_protocol == "SASL_SSL":
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    return options


def admin_client(settings: KafkaSettings, **overrides: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**{**client_options(settings), **overrides})


@asynccontextmanager
async def admin(settings: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    client = admin_client(settings)
    await client.start()
    try:
        yield client
    finally:
        await client.close()


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


# Errors after which an idempotent producer never recovers by itself: aiokafka keeps its producer
# id and sequence numbers, so once the broker lost its state for them (a restart that truncated
# unflushed data) every later send fails the same way. A new producer gets a new id.
_PRODUCER_RESET = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch,
                   InvalidProducerIdMapping, ProducerFenced)


class RenewingProducer:
    """An idempotent AIOKafkaProducer that replaces itself after an error it cannot recover from.

    The send that failed still fails (its caller retries, as for any Kafka error); later sends go
    through a fresh producer. Only `send` and `send_and_wait` are offered: all the services use.
    """

    def __init__(self, make: Callable[[], Any], client_id: str) -> None:
        self._make, self._client_id = make, client_id
        self._producer: Any = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self._resets: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._producer = await _started(self._make, self._client_id)

    async def stop(self) -> None:
        for task in list(self._resets):
            await asyncio.gather(task, return_exceptions=True)
        await self._producer.stop()

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   **kwargs: Any) -> asyncio.Future[Any]:
        generation = self._generation
        inner: asyncio.Future[Any] = await self._producer.send(topic, value, key=key, **kwargs)
        outer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def relay(done: asyncio.Future[Any]) -> None:
            if outer.done():
                return
            if done.cancelled():
                outer.cancel()
                return
            exc = done.exception()
            if exc is None:
                outer.set_result(done.result())
                return
            if isinstance(exc, _PRODUCER_RESET):
                task = asyncio.create_task(self._renew(generation, exc))
                self._resets.add(task)
                task.add_done_callback(self._resets.discard)
            outer.set_exception(exc)

        inner.add_done_callback(relay)
        return outer

    async def send_and_wait(self, topic: str, value: bytes | None = None,
                            key: bytes | None = None, **kwargs: Any) -> Any:
        return await (await self.send(topic, value, key=key, **kwargs))

    async def _renew(self, generation: int, cause: BaseException) -> None:
        async with self._lock:
            if generation != self._generation:
                return  # another failed send already renewed it
            old = self._producer
            self._producer = await _started(self._make, self._client_id)
            self._generation += 1
            RENEWED.labels(self._client_id).inc()
            log.warning("kafka producer renewed", extra={"client": self._client_id,
                                                         "error": repr(cause)})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), timeout=5)


@asynccontextmanager
async def producer(settings: KafkaSettings, client_id: str) -> AsyncIterator[RenewingProducer]:
    # aiokafka's defaults are not durable (acks=1, no idempotence): accepted must mean durable.
    p = RenewingProducer(lambda: AIOKafkaProducer(
        **client_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.kafka_linger_ms,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    ), client_id)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@asynccontextmanager
async def consumer(
    settings: KafkaSettings, group_id: str, client_id: str, *topics: str, **overrides: Any
) -> AsyncIterator[AIOKafkaConsumer]:
    options: dict[str, Any] = {
        **client_options(settings),
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
    async with admin(settings) as client:
        existing = set(await client.list_topics())
        missing = [NewTopic(name, n, 1, topic_configs=configs_for(name))
                   for name, n in wanted.items() if name not in existing]
        if missing:
            # Another instance may have created them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await client.create_topics(missing)
        # Topics created by an older version get today's configs too.
        await client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs)
                                    for name in wanted if (configs := configs_for(name))])
        return [t.name for t in missing]
