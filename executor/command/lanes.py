"""Reading the priority lanes: the high lane first, lower lanes paused while a higher one has work.

Run requests are fetched into a small buffer per lane (at most `per_lane` each) and started
highest lane first whenever a sandbox slot is free. A lane's partitions are paused while any
higher lane has requests waiting (buffered, or not yet fetched: its lag) or while its own buffer
is full, so a flood of low-priority builds neither takes the next free slot from a high one nor
piles up in memory. Offsets are committed only below the lowest request not finished, buffered
ones included (executor.offsets).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from prometheus_client import Gauge

from duetime import kafka
from duetime.lifecycle import Lifecycle
from duetime.settings import KafkaSettings
from executor.offsets import OffsetTracker, commit_done
from schemas.topics import COMMAND_LANES, COMMAND_RUNS

log = logging.getLogger(__name__)
WAITING = Gauge("duetime_command_executor_waiting", "Command run requests fetched, not started",
                ["lane"])
Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


def lanes_to_pause(buffered: Mapping[str, int], lag: Mapping[str, int],
                   per_lane: int) -> set[str]:
    """Every lane below the highest lane with work waiting (buffered here, or in Kafka not
    fetched yet), and every lane whose own buffer is full. A lane's own lag never pauses it:
    it is fetching that lag that brings it down."""
    paused: set[str] = set()
    higher_waiting = False
    for lane in COMMAND_LANES:  # highest first
        if higher_waiting or buffered.get(lane, 0) >= per_lane:
            paused.add(lane)
        higher_waiting = higher_waiting or buffered.get(lane, 0) + lag.get(lane, 0) > 0
    return paused


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, intake: LaneIntake) -> None:
        self.intake = intake

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.intake.revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


class LaneIntake:
    def __init__(self, lifecycle: Lifecycle, settings: KafkaSettings, group: str, client_id: str,
                 handle: Callable[[Record], Awaitable[None]], slots: int, per_lane: int,
                 topics: Mapping[str, str] = COMMAND_RUNS) -> None:
        self.lifecycle, self.settings, self.group, self.client_id = (lifecycle, settings, group,
                                                                     client_id)
        self.handle, self.free, self.per_lane = handle, slots, per_lane
        self.topics = dict(topics)
        self.lane_of = {topic: lane for lane, topic in self.topics.items()}
        self.waiting: dict[str, deque[tuple[Record, int]]] = {lane: deque() for lane in self.topics}
        self.fetched: dict[TopicPartition, int] = {}
        self.tracker = OffsetTracker()
        self.tasks: set[asyncio.Task[None]] = set()
        self.consumer: AIOKafkaConsumer | None = None
        self.drained = asyncio.Event()

    def lag(self, lane: str) -> int:
        """Requests of `lane` in Kafka not fetched yet (known only once a fetch saw the end)."""
        consumer, total = self.consumer, 0
        if consumer is None:
            return 0
        for tp in consumer.assignment():
            if self.lane_of.get(tp.topic) == lane and tp in self.fetched:
                end = consumer.highwater(tp)
                total += max(0, (end or 0) - self.fetched[tp])
        return total

    def pause_lanes(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        buffered = {lane: len(q) for lane, q in self.waiting.items()}
        paused = lanes_to_pause(buffered, {lane: self.lag(lane) for lane in self.waiting},
                                self.per_lane)
        for lane, q in self.waiting.items():
            WAITING.labels(lane).set(len(q))
        tps = consumer.assignment()
        consumer.pause(*[tp for tp in tps if self.lane_of.get(tp.topic) in paused])
        consumer.resume(*[tp for tp in tps if self.lane_of.get(tp.topic) not in paused])

    def take(self, batches: Mapping[TopicPartition, list[Record]]) -> None:
        for tp, messages in batches.items():
            generation = self.tracker.generation(tp)
            for msg in messages:
                self.tracker.started(tp, msg.offset)
                self.fetched[tp] = msg.offset + 1
                self.waiting[self.lane_of[tp.topic]].append((msg, generation))

    def start_waiting(self) -> None:
        """Start buffered requests, highest lane first, while slots are free."""
        if self.lifecycle.stop.is_set():
            return  # a drain starts nothing new: buffered requests stay for the next owner
        for lane in self.topics:
            queue = self.waiting[lane]
            while self.free > 0 and queue:
                msg, generation = queue.popleft()
                tp = TopicPartition(msg.topic, msg.partition)
                if self.tracker.generation(tp) != generation:
                    continue  # revoked since it was fetched: the new owner's
                self.free -= 1
                task = asyncio.create_task(self._one(msg, tp, generation))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _one(self, msg: Record, tp: TopicPartition, generation: int) -> None:
        try:
            await self.handle(msg)
            self.tracker.finished(tp, msg.offset, generation)
        finally:
            self.free += 1
            self.start_waiting()

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await self.commit(revoked)
        finally:
            self.tracker.forget(revoked)
            for tp in revoked:
                self.fetched.pop(tp, None)
            for lane, queue in self.waiting.items():
                self.waiting[lane] = deque(item for item in queue
                                           if TopicPartition(item[0].topic, item[0].partition)
                                           not in revoked)

    async def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        await commit_done(self.consumer, self.tracker, partitions)

    async def consume(self) -> None:
        try:
            async with kafka.consumer(self.settings, self.group, self.client_id,
                                      *self.topics.values(),
                                      listener=_Rebalance(self)) as consumer:
                self.consumer = consumer
                self.lifecycle.ready = True
                while not self.lifecycle.stop.is_set():
                    self.pause_lanes()
                    self.take(await consumer.getmany(timeout_ms=100, max_records=self.per_lane))
                    self.start_waiting()
                await self.drain()
                await self.commit()
                self.consumer = None
        finally:
            self.drained.set()

    async def drain(self) -> None:
        """Running commands get the grace period; the rest are killed and handed back (their
        leases lapse and the sweep requeues them)."""
        if not self.tasks:
            return
        log.info("draining", extra={"in_flight": len(self.tasks)})
        _, pending = await asyncio.wait(set(self.tasks), timeout=self.lifecycle.grace_seconds - 2)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def commit_loop(self) -> None:
        while not await self.lifecycle.sleep(0.5):
            await self.commit()
