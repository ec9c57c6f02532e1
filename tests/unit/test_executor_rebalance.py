"""Defect 5: a partition revoked while the consume loop waits for a slot is never run or
committed again, and a failed commit does not stop later ones (a fake consumer that, like
aiokafka, refuses a whole commit naming a partition it does not own)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import REGISTRY

from duetime.lifecycle import Lifecycle
from executor.offsets import CommitOnRevoke
from executor.service import Consumer, Executor, Settings

P0, P1 = TopicPartition("runs", 0), TopicPartition("runs", 1)


class FakeKafkaConsumer:
    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = set(assigned)
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_next: Exception | None = None

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        for tp in offsets:
            if tp not in self.assigned:
                raise IllegalStateError(f"Partition {tp} is not assigned")
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        self.commits.append(dict(offsets))


class BlockingExecutor:
    """Claims nothing until `release` is set; records which offsets it was asked to claim."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.claimed: list[tuple[int, int]] = []

    async def claim(self, msg: ConsumerRecord[bytes, bytes]) -> None:
        self.claimed.append((msg.partition, msg.offset))
        await self.release.wait()


def _msg(tp: TopicPartition, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, None, b"{}", None, 0, 2, [])


def _consumer(kafka: FakeKafkaConsumer, slots: int = 1) -> tuple[Consumer, BlockingExecutor]:
    executor = BlockingExecutor()
    consumer = Consumer(Lifecycle("test"), cast(Executor, executor),
                        Settings(max_in_flight=slots, executor_id="x1"))
    consumer.consumer = cast(Any, kafka)
    return consumer, executor


async def _settle(consumer: Consumer) -> None:
    await asyncio.wait_for(asyncio.gather(*consumer.tasks), timeout=5)


@pytest.mark.parametrize("assigned_again", [False, True])
async def test_a_partition_revoked_while_waiting_for_a_slot_is_not_run(assigned_again: bool) -> None:
    kafka = FakeKafkaConsumer({P0, P1})
    consumer, executor = _consumer(kafka)
    await consumer.start(P0, consumer.tracker.generation(P0), [_msg(P0, 5)])  # takes the slot
    waiting = asyncio.create_task(
        consumer.start(P1, consumer.tracker.generation(P1), [_msg(P1, 7), _msg(P1, 8)]))
    await asyncio.sleep(0.01)
    assert not waiting.done()  # back-pressure: waits for the slot

    # A rebalance revokes P1 (and, in the second case, hands it back from its committed offset).
    kafka.assigned = {P0, P1} if assigned_again else {P0}
    await CommitOnRevoke(consumer.tracker, consumer.commit).on_partitions_revoked({P1})
    executor.release.set()
    await asyncio.wait_for(waiting, timeout=5)
    await _settle(consumer)

    assert executor.claimed == [(0, 5)]  # P1's fetched messages are the new owner's
    assert consumer.tracker.in_flight() == 0
    await consumer.commit()
    assert kafka.commits == [{P0: 6}]


async def test_commits_name_only_partitions_we_own() -> None:
    kafka = FakeKafkaConsumer({P0})
    consumer, _ = _consumer(kafka)
    consumer.tracker.started(P0, 3)
    consumer.tracker.finished(P0, 3)
    consumer.tracker.started(P1, 9)  # tracked under an assignment we no longer have
    consumer.tracker.finished(P1, 9)
    await consumer.commit()
    assert kafka.commits == [{P0: 4}]


def _failures(error: str) -> float:
    return REGISTRY.get_sample_value("duetime_executor_commit_failures_total",
                                     {"error": error}) or 0.0


async def test_a_failed_commit_is_counted_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    kafka = FakeKafkaConsumer({P0})
    consumer, _ = _consumer(kafka)
    consumer.tracker.started(P0, 3)
    consumer.tracker.finished(P0, 3)
    before = _failures("CommitFailedError")
    kafka.fail_next = CommitFailedError("rebalancing")
    await consumer.commit()
    assert _failures("CommitFailedError") == before + 1
    assert any(r.message == "commit failed" and r.levelname == "ERROR" for r in caplog.records)
    await consumer.commit()
    assert kafka.commits == [{P0: 4}]


async def test_a_revoke_forgets_the_partition_even_when_its_commit_fails() -> None:
    kafka = FakeKafkaConsumer({P0, P1})
    consumer, _ = _consumer(kafka)
    consumer.tracker.started(P1, 2)

    async def broken(partitions: set[TopicPartition] | None = None) -> None:
        raise RuntimeError("unexpected")

    with pytest.raises(RuntimeError):
        await CommitOnRevoke(consumer.tracker, broken).on_partitions_revoked({P1})
    kafka.assigned = {P0}
    assert consumer.tracker.committable() == {}
