"""The event loop a service runs on: uvloop by default (ADR 0022), and how long it keeps
ready work waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, Literal

import uvloop
from prometheus_client import Histogram

# A coroutine resumed by I/O (a Redis reply, a Kafka fetch, a timer) waits for the loop to
# finish the work already queued before it runs: in the executor that wait sits between an
# instant and its call. Sampled PROBE_EVERY_SECONDS apart: a callback is queued and the time
# until it runs is observed.
READY_WAIT = Histogram("duetime_event_loop_ready_wait_seconds",
                       "Time a callback made ready waits for the event loop to run it",
                       buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1,
                                1))
PROBE_EVERY_SECONDS = 0.05


def watch_ready_wait(loop: asyncio.AbstractEventLoop,
                     every: float = PROBE_EVERY_SECONDS) -> None:
    """Sample READY_WAIT every `every` seconds for as long as `loop` runs."""
    def queue_probe() -> None:
        loop.call_soon(ran, time.perf_counter())

    def ran(queued: float) -> None:
        READY_WAIT.observe(time.perf_counter() - queued)
        loop.call_later(every, queue_probe)

    loop.call_later(every, queue_probe)


def run_loop(main: Coroutine[Any, Any, None], kind: Literal["uvloop", "asyncio"]) -> None:
    factory = uvloop.new_event_loop if kind == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        watch_ready_wait(runner.get_loop())
        runner.run(main)
