"""Steady-rate timing plans: W2's due times and the read benchmarks' open-loop request clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


def steady_offsets_ms(rate: float, duration_s: float) -> list[int]:
    """Offsets (ms from the start) of `rate` events a second for `duration_s`, evenly spaced.

    The peer harness's W2 plan: event i at int(i * 1000 / rate), rate * duration events in all.
    """
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    return [int(i * 1000 / rate) for i in range(int(rate * duration_s))]


async def open_loop(offsets_ms: list[int], call: Callable[[int, float], Awaitable[None]],
                    max_in_flight: int = 256) -> float:
    """Start call(i, planned) at planned = start + offsets_ms[i] (monotonic s) whether or not
    earlier calls finished: open loop, so a slow answer cannot slow the clock and hide itself
    (the callee measures from `planned`). Returns the seconds from start to the last answer."""
    gate = asyncio.Semaphore(max_in_flight)
    start = time.monotonic() + 0.05
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, planned: float) -> None:
        try:
            await call(i, planned)
        finally:
            gate.release()

    for i, offset in enumerate(offsets_ms):
        planned = start + offset / 1000
        delay = planned - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await gate.acquire()
        task = asyncio.create_task(one(i, planned))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return time.monotonic() - start
