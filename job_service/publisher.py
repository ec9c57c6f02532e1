"""Publishes job commands to Kafka; answers only once Kafka acknowledged them."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from duetime.kafka import encode
from schemas.events import JobCommand, RunRequested
from schemas.topics import JOB_COMMANDS

log = logging.getLogger(__name__)
PUBLISHED = Counter("duetime_commands_published_total", "Commands acknowledged by Kafka", ["type"])
FAILED = Counter("duetime_commands_publish_failed_total", "Commands Kafka did not acknowledge")


class Unavailable(Exception):
    """Kafka did not acknowledge: the command was not accepted."""


class CommandPublisher:
    def __init__(self, producer: AIOKafkaProducer, timeout_seconds: float) -> None:
        self.producer = producer
        self.timeout_seconds = timeout_seconds

    async def publish(self, command: JobCommand | RunRequested, topic: str = JOB_COMMANDS) -> None:
        key = (command.job_id or "").encode()
        try:
            # Not cancelled by a timeout of ours: the producer's own request timeout decides,
            # so a 503 never hides a message that is still on its way.
            future = await self.producer.send(topic, encode(command), key=key)
            await asyncio.shield(future)
        except (KafkaError, OSError) as exc:
            FAILED.inc()
            log.warning("command not acknowledged", extra={"job_id": command.job_id,
                                                             "error": repr(exc)})
            raise Unavailable(str(exc)) from exc
        PUBLISHED.labels(getattr(command, "type", "run")).inc()
