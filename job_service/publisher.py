"""Publishes job commands to Kafka; answers only once Kafka acknowledged them."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from duetime.kafka import LOG_APPEND_TIME, encode
from duetime.timeutil import to_ms, utcnow
from schemas.events import JobCommand
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

    async def publish(self, command: JobCommand) -> None:
        """Return once Kafka acknowledged the command in time; raise Unavailable otherwise.

        The command carries `accept_by`; the writer ignores it unless Kafka appended it by
        then. A message still retrying inside the producer after we answered 503 is therefore
        harmless, and an acknowledgement that arrives late is judged by the same rule.
        """
        deadline = utcnow() + timedelta(seconds=self.timeout_seconds)
        command = command.model_copy(update={"accept_by": deadline})
        try:
            future = await self.producer.send(JOB_COMMANDS, encode(command),
                                              key=(command.job_id or "").encode())
            # Slightly longer than the deadline: an append just before it still counts.
            meta = await asyncio.wait_for(asyncio.shield(future), self.timeout_seconds + 1)
        except (KafkaError, OSError, TimeoutError) as exc:
            self._failed(command, repr(exc))
            raise Unavailable(str(exc)) from exc
        if meta.timestamp_type == LOG_APPEND_TIME and meta.timestamp > to_ms(deadline):
            self._failed(command, "acknowledged after its deadline")
            raise Unavailable("acknowledged after its deadline")
        PUBLISHED.labels(command.type).inc()

    def _failed(self, command: JobCommand, error: str) -> None:
        FAILED.inc()
        log.warning("command not accepted", extra={"job_id": command.job_id, "error": error})
