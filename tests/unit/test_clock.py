"""The reference clock's offset estimation (duetime/clock.py, ADR 0012)."""

from __future__ import annotations

import asyncio
import random

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from duetime import clock
from duetime.clock import ReferenceClock, Sample, wall_ms


class FakeTime:
    """A local machine whose wall clock is `skew_ms` ahead of the reference.

    Asking the reference takes `rtt` seconds; the server reads its clock `split` of the way
    through (0.5 = symmetric network, 0 or 1 = all the delay on one leg).
    """

    def __init__(self, skew_ms: float) -> None:
        self.true_ms = 1_800_000_000_000.0
        self.skew_ms = skew_ms
        self.trips: list[tuple[float, float]] = []  # (rtt seconds, split) per call
        self.fail = False

    def local(self) -> float:
        return self.true_ms + self.skew_ms

    def monotonic(self) -> float:
        return self.true_ms / 1000 - 1_700_000_000  # another origin, same rate

    async def remote(self) -> float:
        if self.fail:
            raise RedisConnectionError("down")
        rtt, split = self.trips.pop(0) if self.trips else (0.001, 0.5)
        self.true_ms += rtt * 1000 * split
        read = self.true_ms
        self.true_ms += rtt * 1000 * (1 - split)
        return read

    def clock(self) -> ReferenceClock:
        return ReferenceClock(self.remote, local=self.local, monotonic=self.monotonic)


def test_a_sample_is_the_midpoint_of_the_round_trip() -> None:
    s = Sample.measure((1_000.0, 10.0), 1_600.0, (1_010.0, 10.010))
    assert s.offset_ms == pytest.approx(595.0)
    assert s.error_ms == pytest.approx(5.0)
    assert s.monotonic == pytest.approx(10.005)
    estimate, error = s.at(12.005)  # two seconds later
    assert estimate == pytest.approx(3_600.0)
    assert error == pytest.approx(5.0 + 2000 * clock.DRIFT)


async def test_the_reference_lies_within_the_error_whatever_the_network() -> None:
    rng = random.Random(12)
    for _ in range(200):
        t = FakeTime(skew_ms=rng.uniform(-2000, 2000))
        t.trips = [(rng.uniform(0.0001, 0.05), rng.random()) for _ in range(clock.SAMPLES)]
        c = t.clock()
        await c.sync()
        estimate = await c.now_ms()
        _, error = c.sample.at(t.monotonic()) if c.sample else (0.0, 0.0)
        assert abs(estimate - t.true_ms) <= error + 1  # +1: now_ms truncates to whole ms
        assert await c.earliest_ms() <= t.true_ms
        assert c.sample is not None
        assert c.sample.offset_ms == pytest.approx(-t.skew_ms, abs=error)


async def test_sync_keeps_the_shortest_round_trip() -> None:
    t = FakeTime(skew_ms=500)
    t.trips = [(0.040, 0.0), (0.002, 0.5), (0.030, 1.0)]
    c = t.clock()
    best = await c.sync()
    assert best.error_ms == pytest.approx(1.0, abs=1e-3)
    assert best.offset_ms == pytest.approx(-500.0, abs=1.0)


async def test_a_surer_estimate_in_use_outlives_a_sync_of_slow_replies() -> None:
    t = FakeTime(skew_ms=500)
    c = t.clock()
    first = await c.sync()  # three 1 ms round trips: error 0.5 ms
    t.true_ms += 200  # 200 ms later: carried forward, 0.5 + 0.1 ms
    t.trips = [(0.010, 0.5)] * 3  # replies held up by a busy loop: error 5 ms each
    assert await c.sync() is first
    t.true_ms += clock.MAX_AGE_SECONDS * 1000  # too old to keep: the new sample is taken
    t.trips = [(0.010, 0.5)] * 3
    assert (await c.sync()).error_ms == pytest.approx(5.0, abs=1e-3)


async def test_a_step_of_the_wall_clock_after_sync_changes_nothing() -> None:
    t = FakeTime(skew_ms=0)
    c = t.clock()
    await c.sync()
    before = await c.now_ms()
    t.skew_ms = 3_600_000  # someone set the machine's clock an hour ahead
    assert await c.now_ms() == before


async def test_an_old_estimate_serves_while_the_reference_is_unreachable() -> None:
    t = FakeTime(skew_ms=250)
    c = t.clock()
    first = await c.sync()
    t.fail = True
    t.true_ms += (clock.MAX_AGE_SECONDS + 5) * 1000
    earliest = await c.earliest_ms()
    assert c.sample == first
    assert earliest <= t.true_ms
    assert t.true_ms - earliest <= first.error_ms + 10_000 * clock.DRIFT + 1


async def test_unreachable_and_never_synced_is_an_error() -> None:
    t = FakeTime(skew_ms=0)
    t.fail = True
    with pytest.raises(RedisConnectionError):
        await t.clock().now_ms()


async def test_wait_until_is_never_early_on_a_clock_500_ms_ahead() -> None:
    # The real event loop and a reference that is this machine's clock minus 500 ms.
    async def reference() -> float:
        return wall_ms() - 500

    c = ReferenceClock(reference)
    for _ in range(5):
        target = await reference() + 30
        await c.wait_until(target)
        assert await reference() >= target
    assert c.sample is not None
    assert c.sample.offset_ms == pytest.approx(-500, abs=5)


async def test_callers_finding_it_stale_share_one_sync() -> None:
    t = FakeTime(skew_ms=0)
    calls = 0
    real = t.remote

    async def counted() -> float:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return await real()

    c = ReferenceClock(counted, local=t.local, monotonic=t.monotonic)
    await asyncio.gather(*(c.now_ms() for _ in range(100)))
    assert calls == clock.SAMPLES
