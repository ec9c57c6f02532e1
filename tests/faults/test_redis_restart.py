"""A plain Redis restart (stopped, started again from its append-only file) keeps every write.

Redis writes a Lua script's effects, and every MULTI/EXEC, to its AOF as a transaction, and
replays them at start as its default user, checking that user's ACL (valkey issue 3983). The
stack's default user was disabled *without permissions*, so every replayed transaction failed
with NOPERM: a restart silently dropped done flags, leases and loads, and runs that had fired
fired again (found under load by the model checker, ADR 0035). These tests restart the real
Redis and look at what came back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from redis.asyncio import Redis

from duetime.due_set import DueSet, Entry, Load
from tests.support.jobs import Cleanup, http_job, wait_state
from tests.support.redis_client import reconnected
from tests.support.sink import Sink
from tests.support.stack import ROOT, stack
from tests.support.waiting import eventually


async def _restart_redis(redis: Redis) -> None:
    stack("restart", "redis")
    await reconnected(redis)


async def _refused_as_done() -> float:
    """Run requests the executors refused because their attempt was done (their metrics)."""
    base = int(os.environ.get("DUETIME_EXECUTOR_PORT", "18106"))
    total = 0.0
    async with httpx.AsyncClient(timeout=5) as client:
        for port in (base, base + 10):  # executor-2, when a test started it
            try:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.TransportError:
                continue
            total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith('duetime_executor_claims_refused_total{reason="done"}'))
    return total


@contextmanager
def _frozen(service: str) -> Iterator[None]:
    """SIGSTOP a service of the stack (by its pid file) for the block."""
    pid = int((ROOT / ".stack" / "run" / f"{service}.pid").read_text().split()[0])
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_restart_keeps_what_scripts_and_transactions_wrote(redis: Redis) -> None:
    # A due-set of its own: nothing of the stack's is touched.
    due_set = DueSet(redis, 2, prefix=f"restart-{uuid.uuid4().hex[:8]}")
    done = Entry("job-done", 1, 1_000, 1, 5)
    held = Entry("job-held", 1, 2_000, 1, 5)
    for entry in (done, held):  # a lease and its owner: two writes, one script
        assert await due_set.claim(entry, entry.member(), "ex-1", 10_000, 3_600_000) == "ok"
    await due_set.complete(done, None, 0)  # done flag, lease and owner gone: one script
    kept = Entry("job-loaded", 3, 5_000, 1, 5)
    await due_set.load_many([Load("job-loaded", 3, "active", {"run": 1}, [kept])])  # MULTI

    await _restart_redis(redis)

    assert await redis.get(due_set.done_key(due_set.shard_of("job-done"), done.runkey)) == b"1|final"
    leases = due_set.key("leases", due_set.shard_of("job-held"))
    assert await redis.zscore(leases, held.runkey) is not None
    assert await redis.zscore(leases, done.runkey) is None
    shard = due_set.shard_of("job-loaded")
    assert await redis.hget(due_set.key("jobs", shard), "job-loaded") == b"3|active"
    assert await redis.zscore(due_set.key("due", shard), kept.member()) == 5_000


async def test_runs_that_fired_before_a_restart_do_not_fire_again(
    api: httpx.AsyncClient, redis: Redis, sink: Sink, path: str, jobs: Cleanup,
) -> None:
    at = datetime.now(UTC) + timedelta(seconds=4)
    ids = [await jobs.create(api, http_job(
        sink.url(f"{path}/{i}"), {"type": "once", "at": (at + timedelta(milliseconds=50 * i)).isoformat()},
    )) for i in range(10)]
    for job_id in ids:
        await wait_state(api, job_id, "active")
    # With the writer frozen, Postgres still says every job is due at its instant after it
    # fired: the rebuild after the restart loads each firing again, and only the done flags
    # that survived the restart stand between those entries and a second call.
    with _frozen("writer"):
        for i in range(10):
            await sink.wait_for(f"{path}/{i}", 1, timeout=20)
        refused = await _refused_as_done()
        await _restart_redis(redis)

        async def refused_or_repeated() -> bool:
            # The rebuilt entries reached an executor and were refused as done — or fired.
            repeated = any(len(sink.hits_for(f"{path}/{i}")) > 1 for i in range(10))
            return repeated or await _refused_as_done() >= refused + len(ids)

        await eventually(refused_or_repeated, timeout=30, interval=0.2)
        for i in range(10):  # time for a second call to arrive, if one were coming
            await sink.wait_for(f"{path}/{i}", 2, timeout=0.3)
    for job_id in ids:
        await wait_state(api, job_id, "completed")
    assert [len(sink.hits_for(f"{path}/{i}")) for i in range(10)] == [1] * 10


async def test_the_first_requests_after_a_restart_are_answered(
    api: httpx.AsyncClient, redis: Redis, jobs: Cleanup,
) -> None:
    """redis-py 8.1 left connections the restarted server had closed in its pools (ADR 0052):
    the first command on each failed, and the job service answered those creates 500."""
    def spec(i: int) -> dict[str, Any]:
        return http_job(f"http://127.0.0.1:18999/restart/{i}", {"type": "delay", "seconds": 600},
                        name=f"after-restart-{i}")

    async def creates(tag: str) -> list[int]:
        answers = await asyncio.gather(*(api.post(
            "/jobs", json=spec(i), headers={"Idempotency-Key": f"{tag}-{uuid.uuid4()}"})
            for i in range(24)))
        for answer in answers:
            if answer.status_code == 202:
                jobs.track(api, answer.json()["job_id"])
        return [a.status_code for a in answers]

    assert set(await creates("before")) == {202}  # the job service's pool holds connections
    await _restart_redis(redis)
    assert set(await creates("after")) == {202}
