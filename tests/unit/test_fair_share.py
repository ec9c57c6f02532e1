"""Fair sharing in the executor (executor.fair_share): a tenant at its cap waits aside, holding
no slot, while other tenants' runs behind it start; offsets still wait for every run."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from duetime.lifecycle import Lifecycle
from executor.fair_share import ConnectionSlots, TenantShare
from executor.service import Consumer, Executor, Settings
from tests.unit.test_executor_rebalance import FakeKafkaConsumer

P0 = TopicPartition("runs", 0)


def _msg(offset: int, tenant: str) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps({"tenant": tenant, "n": offset})
    return ConsumerRecord(P0.topic, P0.partition, offset, 0, 0, None, value, None, 0,
                          len(value), [])


class TarpitExecutor:
    """Claims tenant "a"'s runs and never finishes them until `release`; "b"'s at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.claimed: list[tuple[str, int]] = []

    async def claim(self, msg: ConsumerRecord[bytes, bytes]) -> None:
        tenant = orjson.loads(msg.value or b"")["tenant"]
        self.claimed.append((tenant, msg.offset))
        if tenant == "a":
            await self.release.wait()


def _consumer(fraction: float) -> tuple[Consumer, TarpitExecutor, FakeKafkaConsumer]:
    executor = TarpitExecutor()
    consumer = Consumer(Lifecycle("test"), cast(Executor, executor),
                        Settings(max_in_flight=4, tenant_max_in_flight=fraction,
                                 executor_id="x1"))
    kafka = FakeKafkaConsumer({P0})
    consumer.consumer = cast(Any, kafka)
    return consumer, executor, kafka


async def test_a_tenant_at_its_cap_does_not_hold_slots_or_block_others() -> None:
    consumer, executor, kafka = _consumer(0.5)  # 4 slots, at most 2 per tenant
    flood = [_msg(i, "a") for i in range(6)] + [_msg(6, "b"), _msg(7, "b"), _msg(8, "b")]
    await asyncio.wait_for(consumer.start(P0, 0, flood), timeout=2)  # never waits on "a"
    await asyncio.sleep(0.05)
    assert executor.claimed == [("a", 0), ("a", 1), ("b", 6), ("b", 7), ("b", 8)]
    assert consumer.share.running == {"a": 2} and consumer.share.waiting_count() == 4
    await consumer.commit()
    assert all(c[P0] == 0 for c in kafka.commits)  # offset 0 still runs: nothing past it

    executor.release.set()
    await asyncio.wait_for(_all_done(consumer), timeout=2)
    assert sorted(executor.claimed) == sorted([("a", i) for i in range(6)]
                                              + [("b", 6), ("b", 7), ("b", 8)])
    assert consumer.share.running == {} and consumer.slots._value == 4
    await consumer.commit()
    assert kafka.commits[-1] == {P0: 9}


async def test_without_a_cap_one_tenant_fills_every_slot() -> None:
    # The failure the cap prevents: the intake stops behind "a"'s runs, "b" never starts.
    consumer, executor, _ = _consumer(1.0)
    flood = [_msg(i, "a") for i in range(6)] + [_msg(6, "b")]
    starting = asyncio.create_task(consumer.start(P0, 0, flood))
    await asyncio.sleep(0.1)
    assert not starting.done() and ("b", 6) not in executor.claimed
    executor.release.set()
    await asyncio.wait_for(starting, timeout=2)
    await asyncio.wait_for(_all_done(consumer), timeout=2)


async def test_runs_waiting_aside_are_not_started_by_a_drain() -> None:
    consumer, executor, kafka = _consumer(0.25)  # 1 per tenant
    await consumer.start(P0, 0, [_msg(0, "a"), _msg(1, "a")])
    consumer.lifecycle.stop.set()
    executor.release.set()
    await asyncio.wait_for(_all_done(consumer), timeout=2)
    assert executor.claimed == [("a", 0)]
    await consumer.commit()
    assert kafka.commits == [{P0: 1}]  # offset 1 is left for the partition's next owner


async def _all_done(consumer: Consumer) -> None:
    while consumer.tasks:
        await asyncio.gather(*consumer.tasks)


async def test_a_waiting_run_admitted_while_it_waited_for_room_runs() -> None:
    share: TenantShare[str] = TenantShare(cap=1, max_waiting=1)
    assert share.admit("a") and not share.admit("a")
    assert await share.wait_aside("a", "first")  # set aside
    late = asyncio.create_task(share.wait_aside("a", "second"))  # no room: waits
    await asyncio.sleep(0.01)
    assert not late.done()
    assert share.handover("a") == "first"  # frees the room; "a" keeps its place
    assert await late  # set aside behind "first"'s run
    assert share.handover("a") == "second" and share.handover("a") is None
    assert share.running == {} and share.admit("a")


async def test_connection_slots_cap_each_host_and_forget_idle_ones() -> None:
    slots = ConnectionSlots(total=3, per_host=2)
    host, other = ("http", "tarpit", 80), ("http", "sink", 80)
    async with slots.slot(host), slots.slot(host):
        blocked = asyncio.create_task(_enter(slots, host))
        await asyncio.sleep(0.01)
        assert not blocked.done()  # a third call to the same host waits...
        await asyncio.wait_for(_enter(slots, other), timeout=1)  # ...another host does not
    await asyncio.wait_for(blocked, timeout=1)
    assert slots.hosts == {}


async def _enter(slots: ConnectionSlots, key: tuple[str, str, int]) -> None:
    async with slots.slot(key):
        pass


async def test_calls_waiting_for_a_slot_are_counted_and_reported() -> None:
    """`duetime_executor_calls_waiting_for_connection`: a call waiting for its host or the pool
    counts until it holds both; one cancelled while it waits counts no more."""
    reported: list[int] = []
    slots = ConnectionSlots(total=2, per_host=1, report=reported.append)
    host, other = ("http", "10.0.0.1", 80), ("http", "10.0.0.2", 80)
    async with slots.slot(host):
        same_host = asyncio.create_task(_enter(slots, host))
        await asyncio.sleep(0.01)
        assert slots.waiting == 1
        async with slots.slot(other):  # the pool's last slot
            pool_full = asyncio.create_task(_enter(slots, ("http", "10.0.0.3", 80)))
            await asyncio.sleep(0.01)
            assert slots.waiting == 2
            pool_full.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pool_full
            assert slots.waiting == 1
    await asyncio.wait_for(same_host, timeout=1)
    assert slots.waiting == 0 and reported == [1, 0, 1, 2, 1, 2, 1, 0]
