"""/readyz of a consumer means connected AND caught up (duetime.consumer_readiness), on the real Kafka."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer

from duetime import kafka
from duetime.consumer_readiness import caught_up, lag
from duetime.settings import KafkaSettings
from tests.support.kafka import kafka_settings, scratch_topic
from tests.support.waiting import eventually


@pytest.fixture
async def topic(env: dict[str, str]) -> AsyncIterator[str]:
    async with scratch_topic(kafka_settings(env), partitions=2) as name:
        yield name


async def produce(settings: KafkaSettings, topic: str, count: int) -> None:
    async with kafka.producer(settings, "test-ready") as producer:
        for i in range(count):
            await producer.send_and_wait(topic, b"x", key=str(i).encode())


async def take(consumer: AIOKafkaConsumer, most: int) -> int:
    batches = await consumer.getmany(timeout_ms=500, max_records=most)
    return sum(len(m) for m in batches.values())


async def test_ready_once_caught_up_and_then_through_later_backlogs(env: dict[str, str],
                                                                    topic: str) -> None:
    settings = kafka_settings(env)
    await produce(settings, topic, 6)
    async with kafka.consumer(settings, f"duetime-test-{uuid.uuid4().hex}", "test-ready",
                              topic, max_poll_records=1) as consumer:
        strict, loose = caught_up(consumer, 0), caught_up(consumer, 10)
        assert not await strict()  # joined or not, nothing is read yet

        await eventually(lambda: take(consumer, 1), timeout=20)
        assert await lag(consumer) == 5
        assert not await strict()
        assert await loose()  # within its threshold

        async def read_all() -> bool:
            await take(consumer, 10)
            return await strict()

        await eventually(read_all, timeout=20)
        # New messages: behind again (the fetcher learns the new ends without a read), but a
        # consumer that caught up once stays ready: falling behind under load is the lag
        # metric's and alert's business, not a reason to stop a rollout.
        await produce(settings, topic, 3)

        async def behind() -> bool:
            return bool(await lag(consumer))

        await eventually(behind, timeout=20)
        assert await strict()


async def test_a_member_without_partitions_is_ready_once_it_joined(env: dict[str, str],
                                                                   topic: str) -> None:
    settings = kafka_settings(env)
    group = f"duetime-test-{uuid.uuid4().hex}"
    async with kafka.consumer(settings, group, "first", topic) as first, \
            kafka.consumer(settings, group, "second", topic) as second, \
            kafka.consumer(settings, group, "third", topic) as third:
        members = [first, second, third]

        async def joined_and_caught_up() -> bool:
            for member in members:
                await take(member, 10)
            return all([await caught_up(m, 0)() for m in members])

        await eventually(joined_and_caught_up, timeout=30)
        # Two partitions, three members: one has none and is ready all the same.
        assert sorted(len(m.assignment()) for m in members) == [0, 1, 1]
