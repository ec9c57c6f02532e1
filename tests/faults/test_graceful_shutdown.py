"""SIGTERM lets a running attempt finish and records it; nothing runs twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.support.jobs import create, http_job, wait_runs
from tests.support.sink import Sink
from tests.support.stack import stack


@pytest.fixture
async def slow_sink(make_sink: Callable[..., Awaitable[Sink]]) -> Sink:
    return await make_sink(delay_seconds=3)


async def test_sigterm_drains_the_executor(api: httpx.AsyncClient, slow_sink: Sink,
                                           path: str) -> None:
    job_id = await create(api, http_job(slow_sink.url(path), {"type": "now"},
                                        retry={"max_attempts": 1}))
    await slow_sink.wait_for(path, 1, timeout=10)
    try:
        await asyncio.to_thread(stack, "stop", "executor")  # SIGTERM, waits for the exit
    finally:
        await asyncio.to_thread(stack, "start", "executor")
    run = (await wait_runs(api, job_id, "succeeded", timeout=20))[0]
    assert run["http_status"] == 200
    await asyncio.sleep(2)
    assert len(slow_sink.hits_for(path)) == 1
