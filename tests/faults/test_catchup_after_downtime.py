"""After the scheduler was stopped and started again, missed firings follow catch-up policies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from redis.asyncio import Redis

from duetime.catchup import Outage, outage_of
from duetime.due_set import DueSet
from duetime.settings import RedisSettings
from tests.support.jobs import create, http_job, runs
from tests.support.sink import Sink
from tests.support.stack import stack
from tests.support.waiting import eventually

# Everything but the storage (Postgres and Redis keep their data, as they would in a restart of
# the scheduler): the gateway, every service and Kafka go down and come back. The watcher goes
# last and comes back first: silent for less than its 20 s horizon, it records no outage of its
# own, so what is judged here is the dispatching path's outage alone. (A longer silence of the
# watcher is an outage of the loading path, by which only the loaders judge the firings they
# load late: tests/integration/test_catchup_by_outage.py.)
SERVICES = ("gateway", "job_service", "search_service", "dispatcher", "executor", "writer",
            "kafka", "watcher")


async def test_catchup_policies_after_a_real_stop_and_start(
    api: httpx.AsyncClient, sink: Sink, path: str, redis: Redis
) -> None:
    every = {"type": "interval", "every_seconds": 1}
    jobs = {policy: await create(api, http_job(sink.url(f"{path}/{policy}"), every,
                                               catchup=policy))
            for policy in ("latest", "all", "none")}
    due_while_down = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    once = await create(api, http_job(sink.url(f"{path}/once"),
                                      {"type": "once", "at": due_while_down}))
    for policy in jobs:
        await sink.wait_for(f"{path}/{policy}", 1, timeout=10)

    for name in SERVICES:
        await asyncio.to_thread(stack, "stop", name)
    stopped = datetime.now(UTC).timestamp()
    before = {p: len(sink.hits_for(f"{path}/{p}")) for p in jobs}
    await asyncio.sleep(9)
    resumed = 0.0
    for name in reversed(SERVICES):
        if name == "dispatcher":
            resumed = datetime.now(UTC).timestamp()  # dispatching resumes after this
        await asyncio.to_thread(stack, "start", name)

    # The one-shot job that came due while down fires exactly once.
    assert len(await sink.wait_for(f"{path}/once", 1, timeout=20)) == 1
    await asyncio.sleep(4)
    for job_id in jobs.values():
        await api.delete(f"/jobs/{job_id}")

    # The outage the system recorded (ADR 0011): from the dispatching path's last heartbeat
    # before the stop to its first after the start. It must hold the whole stop.
    due = DueSet(redis, RedisSettings().due_shards)

    async def outage(policy: str) -> Outage:
        found = outage_of(int((stopped + 0.5) * 1000),
                          await due.outages(due.shard_of(jobs[policy]), dispatching_only=True))
        assert found is not None and found.end_ms >= resumed * 1000, found
        return found

    async def missed(policy: str) -> list[float]:
        """Firings scheduled inside the outage that still arrived."""
        o = await outage(policy)
        return [t for h in sink.hits_for(f"{path}/{policy}")[before[policy]:]
                if o.start_ms / 1000 < (t := datetime.fromisoformat(
                    h.headers["X-Duetime-Scheduled-At"]).timestamp()) < o.end_ms / 1000]

    down = await outage("all")
    instants = int((down.end_ms - down.start_ms) / 1000)  # every second, give or take one
    assert len(await missed("all")) >= instants - 1, "catchup=all fires every missed firing"
    latest = await missed("latest")
    seen = [datetime.fromisoformat(h.headers["X-Duetime-Scheduled-At"]).timestamp()
            for h in sink.hits_for(f"{path}/latest")]
    assert len(latest) == 1, ("catchup=latest fires exactly one missed firing",
                              await outage("latest"), resumed, seen)
    assert latest[0] >= (await outage("latest")).end_ms / 1000 - 1, "the most recent one"
    assert await missed("none") == [], "catchup=none fires no missed firing"

    async def skipped(policy: str) -> list[dict[str, object]] | None:
        found = [r for r in await runs(api, jobs[policy])
                 if r["status"] == "skipped" and r["reason"] == "catchup"]
        return found or None

    assert len(await eventually(lambda: skipped("none"), timeout=15)) >= 4
    assert len(await eventually(lambda: skipped("latest"), timeout=15)) >= 3
    assert await skipped("all") is None
    assert len(sink.hits_for(f"{path}/once")) == 1 and once
