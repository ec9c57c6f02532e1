"""Publishes job commands to Kafka; answers only once Kafka acknowledged them in time.

The rule (ADR 0012, docs/guarantees-notes-clocks.md): a command carries `accept_by`, the job
service's clock plus the publish timeout. It takes effect iff the broker appended it by then,
judged on the broker's append time (LogAppendTime) — by the writer, which applies or rejects it,
and by this publisher, which answers 202 only on an acknowledgement saying so. The publisher
waits for that acknowledgement until `accept_by` plus the broker clock skew we tolerate: after
that, an append carries a later time and the writer refuses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge

from duetime.clock import Sample, wall_ms
from duetime.kafka import LOG_APPEND_TIME, encode
from duetime.timeutil import to_ms, utcnow
from schemas.events import JobCommand
from schemas.topics import JOB_COMMANDS

log = logging.getLogger(__name__)
PUBLISHED = Counter("duetime_commands_published_total", "Commands acknowledged by Kafka", ["type"])
FAILED = Counter("duetime_commands_publish_failed_total", "Commands Kafka did not acknowledge",
                 ["outcome"])
BROKER_OFFSET = Gauge("duetime_broker_clock_offset_seconds",
                      "Broker append time minus the job service's clock (from the last ack)")
# The most the broker's clock may differ from the job service's (both NTP-synchronised). It
# bounds how long past `accept_by` an append can still carry a time at or before it.
MAX_BROKER_SKEW_SECONDS = 1.0


class Unavailable(Exception):
    """Kafka did not acknowledge the command in time: it was not accepted.

    `unknown` is True when Kafka may still have appended it by `accept_by` (its answer did not
    arrive, or the send failed after the request went out): then it may take effect.
    """

    def __init__(self, reason: str, *, unknown: bool) -> None:
        super().__init__(reason)
        self.unknown = unknown


class CommandPublisher:
    def __init__(self, producer: AIOKafkaProducer, timeout_seconds: float,
                 max_skew_seconds: float = MAX_BROKER_SKEW_SECONDS) -> None:
        self.producer = producer
        self.timeout_seconds = timeout_seconds
        self.max_skew_seconds = max_skew_seconds

    async def publish(self, command: JobCommand) -> None:
        """Return once Kafka acknowledged the command by its `accept_by`; raise Unavailable
        otherwise (see the module docstring for when that 503 may still take effect)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.timeout_seconds + self.max_skew_seconds
        accept_by = utcnow() + timedelta(seconds=self.timeout_seconds)
        command = command.model_copy(update={"accept_by": accept_by})
        sent = (wall_ms(), time.monotonic())
        try:
            future = await self.producer.send(JOB_COMMANDS, encode(command),
                                              key=(command.job_id or "").encode())
        except (KafkaError, OSError) as exc:  # refused before it left: never appended
            raise self._failed(command, repr(exc), unknown=False) from exc
        try:
            meta = await asyncio.wait_for(asyncio.shield(future), max(0.0, give_up - loop.time()))
        except (KafkaError, OSError, TimeoutError) as exc:
            raise self._failed(command, repr(exc), unknown=True) from exc
        if meta.timestamp_type == LOG_APPEND_TIME:
            self._observe_skew(sent, meta.timestamp)
            if meta.timestamp > to_ms(accept_by):  # the writer rejects it by the same numbers
                raise self._failed(command, "appended after its accept_by", unknown=False)
        PUBLISHED.labels(command.type).inc()

    def _observe_skew(self, sent: tuple[float, float], appended_ms: float) -> None:
        """The broker appended between our send and its ack: that bounds its clock's offset."""
        sample = Sample.measure(sent, appended_ms, (wall_ms(), time.monotonic()))
        BROKER_OFFSET.set(sample.offset_ms / 1000)
        if abs(sample.offset_ms) - sample.error_ms > self.max_skew_seconds * 1000:
            log.error("broker clock outside the tolerated skew",
                      extra={"offset_ms": sample.offset_ms, "error_ms": sample.error_ms,
                             "max_skew_ms": self.max_skew_seconds * 1000})

    def _failed(self, command: JobCommand, error: str, *, unknown: bool) -> Unavailable:
        FAILED.labels("unknown" if unknown else "not_appended").inc()
        log.warning("command not accepted", extra={"job_id": command.job_id, "error": error,
                                                   "outcome_unknown": unknown})
        return Unavailable(error, unknown=unknown)
