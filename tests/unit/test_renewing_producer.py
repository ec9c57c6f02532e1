"""An idempotent producer whose broker lost its sequence state is replaced, once, and later
sends go through the new one (aiokafka keeps failing with the old producer id forever)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from aiokafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumber

from duetime.kafka import RenewingProducer


class FakeProducer:
    """Stands in for AIOKafkaProducer: each send's future fails with `fail` while it is set."""

    made: ClassVar[list[FakeProducer]] = []

    def __init__(self) -> None:
        self.fail: BaseException | None = None
        self.sent: list[bytes | None] = []
        self.stopped = False
        FakeProducer.made.append(self)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   **kwargs: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append(value)
        if self.fail is not None:
            future.set_exception(self.fail)
        else:
            future.set_result("meta")
        return future


async def _producer() -> RenewingProducer:
    FakeProducer.made = []
    producer = RenewingProducer(FakeProducer, "test")
    await producer.start()
    return producer


async def test_a_lost_sequence_renews_the_producer_once_and_later_sends_succeed() -> None:
    producer = await _producer()
    first = FakeProducer.made[0]
    first.fail = OutOfOrderSequenceNumber()
    failed = [await producer.send("t", b"a"), await producer.send("t", b"b")]
    for future in failed:
        with pytest.raises(OutOfOrderSequenceNumber):
            await future  # the caller retries these, as for any Kafka error
    for _ in range(10):
        await asyncio.sleep(0)
    assert len(FakeProducer.made) == 2 and first.stopped  # two failures, one renewal
    assert await producer.send_and_wait("t", b"c") == "meta"
    assert FakeProducer.made[1].sent == [b"c"]
    await producer.stop()


async def test_an_ordinary_error_keeps_the_producer() -> None:
    producer = await _producer()
    FakeProducer.made[0].fail = KafkaTimeoutError()
    with pytest.raises(KafkaTimeoutError):
        await producer.send_and_wait("t", b"a")
    await asyncio.sleep(0)
    assert len(FakeProducer.made) == 1
    await producer.stop()
