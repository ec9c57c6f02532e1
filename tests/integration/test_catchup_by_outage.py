"""Catch-up is judged by outage, never by load (ADR 0011): the dispatcher's functions called
directly against real Redis (a due-set key prefix per test); Kafka is a recording producer."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from dispatcher.service import Dispatcher, Settings
from duetime.due_set import DueSet
from duetime.loading import entries_for, plan, run_template
from duetime.timeutil import from_ms, now_ms, to_ms
from schemas.api import JobSpec
from schemas.topics import RUNS, RUNS_STATUS
from tests.integration.test_due_set import due  # a due-set with its own key prefix

__all__ = ["due"]


class Recorder:
    """Stands in for the Kafka producer: every send is acknowledged at once and kept."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
        self.sent.append((topic, orjson.loads(value)))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def fired(self, job_id: str) -> list[int]:
        return sorted(to_ms(datetime.fromisoformat(m["scheduled_at"])) for t, m in self.sent
                      if t == RUNS and m["job_id"] == job_id)

    def skipped(self, job_id: str) -> list[int]:
        return sorted(to_ms(datetime.fromisoformat(m["scheduled_at"])) for t, m in self.sent
                      if t == RUNS_STATUS and m["job_id"] == job_id and m["status"] == "skipped"
                      and m["reason"] == "catchup")


def dispatcher(due: DueSet, batch_size: int = 500) -> tuple[Dispatcher, Recorder]:
    producer = Recorder()
    return Dispatcher(due, producer, Settings(batch_size=batch_size)), producer


async def every_second_job(due: DueSet, policy: str, first_ms: int, until_ms: int) -> str:
    """An every-second job whose firings from `first_ms` were loaded before they were due (as
    the watcher does, with each firing's next instant)."""
    job_id = f"j{uuid.uuid4().hex[:10]}"
    spec = JobSpec.model_validate({"name": "c", "schedule": {"type": "interval", "every_seconds": 1},
                                   "target": {"type": "http", "url": "http://sink/x"},
                                   "catchup": policy})
    created = from_ms(first_ms - 1000)
    window = plan(spec, created, from_ms(first_ms), datetime.now(UTC), from_ms(until_ms))
    await due.load(job_id, 1, "active", run_template(job_id, "t", 1, spec),
                   entries_for(job_id, 1, spec, window.fire, window.next_ms))
    return job_id


async def beat(due: DueSet, start_ms: int, end_ms: int) -> None:
    """The dispatching path alive from start to end (a beat every 200 ms), popping nothing."""
    for at in range(start_ms, end_ms, 200):
        await due.dispatch_round(at, at, 0, alive_ms=at)


async def drain(d: Dispatcher) -> None:
    while (await d.dispatch())[0]:
        pass
    await d.drain()


async def test_a_backlog_popped_late_without_an_outage_fires_every_none_firing(due: DueSet) -> None:
    now = now_ms()
    job = await every_second_job(due, "none", now - 5500, now - 500)
    await beat(due, now - 6000, now)  # busy (nothing popped for 5 s), never down
    d, sent = dispatcher(due)
    await drain(d)
    assert len(sent.fired(job)) == 5 and sent.skipped(job) == []


@pytest.mark.parametrize(("policy", "fired", "skipped"), [("latest", 1, 9), ("none", 0, 10),
                                                         ("all", 10, 0)])
async def test_a_heartbeat_gap_of_ten_seconds_follows_the_policy_across_pops(
        due: DueSet, policy: str, fired: int, skipped: int) -> None:
    now = now_ms()
    await beat(due, now - 12_000, now - 11_000)  # then silence: the system is down
    # Ten due while down; the eleventh 200 ms past the lookahead, so not popped with them.
    first = now - 10_000 + Settings().lookahead_ms + 200
    job = await every_second_job(due, policy, first, now + 2000)
    d, sent = dispatcher(due, batch_size=3)  # four pops: `latest` is judged across them
    await drain(d)
    missed = [first + 1000 * k for k in range(10)]
    assert len(sent.fired(job)) == fired and len(sent.skipped(job)) == skipped
    assert sorted(sent.fired(job) + sent.skipped(job)) == missed
    if policy == "latest":
        assert sent.fired(job) == [missed[-1]]  # the newest
    assert (await due.sizes())["inflight"] == 0


async def test_a_requeued_entry_keeps_its_instant_and_is_judged_by_it(due: DueSet) -> None:
    now = now_ms()
    await beat(due, now - 7000, now)  # another dispatcher kept the path alive throughout
    on_time = await every_second_job(due, "none", now - 6200, now - 6000)
    assert len(await due.pop_due(0, now - 6100, now - 6100, 10)) == 1  # then killed before publish
    assert await due.requeue_inflight(0, older_than_ms=now, now_ms=now) == 1
    d, sent = dispatcher(due)
    await drain(d)
    assert sent.fired(on_time) == [now - 6200]  # not missed: it still fires
    request = next(m for t, m in sent.sent if t == RUNS)
    assert to_ms(datetime.fromisoformat(request["due_at"])) == now - 6200


async def test_a_requeued_entry_missed_in_an_outage_follows_the_policy(due: DueSet) -> None:
    now = now_ms()
    await due.dispatch_round(now - 20_000, now - 20_000, 0, alive_ms=now - 20_000)
    missed = await every_second_job(due, "none", now - 19_800, now - 19_500)
    # Popped at its time, then everything stopped before it was published.
    assert len(await due.pop_due(0, now - 19_900, now - 19_700, 10)) == 1
    d, sent = dispatcher(due)
    await d.dispatch()  # the path is back: the outage is recorded
    assert await due.requeue_inflight(0, older_than_ms=now, now_ms=now_ms()) == 1
    await drain(d)
    assert sent.fired(missed) == [] and sent.skipped(missed) == [now - 19_800]


async def test_kafka_failing_holds_the_heartbeat_back(due: DueSet) -> None:
    d, _ = dispatcher(due)
    now = now_ms()
    assert d.proven_ms(now) == now
    d.failing_since = now - 3000
    assert d.proven_ms(now) == now - 3000
    await due.dispatch_round(now - 9000, now - 9000, 0, alive_ms=now - 9000)
    outages = (await due.dispatch_round(now, now, 0, alive_ms=d.proven_ms(now))).outages[0]
    assert [(o.start_ms, o.end_ms) for o in outages] == [(now - 9000, now - 3000)]


async def test_a_watcher_outage_does_not_skip_what_was_loaded_in_time(due: DueSet) -> None:
    """The watcher was down (its poll silent for 30 s, past its 1 s horizon) while the
    dispatcher ran and the writer kept loading: those firings were not missed (the CI failure
    where a watcher restarted after the dispatcher made `latest` fire twice and skip one)."""
    now = now_ms()
    await due.loaded(now - 30_000, 1000)
    await due.loaded(now, 1000)  # back: it records the outage (now - 29 s, now)
    job = await every_second_job(due, "none", now - 5500, now - 500)
    await beat(due, now - 6000, now)  # the dispatching path alive throughout
    d, sent = dispatcher(due)
    await drain(d)
    assert len(sent.fired(job)) == 5 and sent.skipped(job) == []
    # A loader still judges by it: a firing in it that it loads only now was missed.
    loaded = await due.outages_many([0])
    assert [(o.start_ms, o.end_ms) for o in loaded[0]] == [(now - 29_000, now)]
    assert await due.outages(0, dispatching_only=True) == []
