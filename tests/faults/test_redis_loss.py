"""Redis losing all its data loses no job: the watcher rebuilds the due-set from Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from redis.asyncio import Redis

from tests.support.jobs import Cleanup, create, http_job, wait_runs
from tests.support.sink import Sink
from tests.support.waiting import eventually


async def test_due_set_is_rebuilt_after_redis_loses_everything(
    api: httpx.AsyncClient, redis: Redis, sink: Sink, path: str, jobs: Cleanup
) -> None:
    at = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
    once = await create(api, http_job(sink.url(path + "/once"), {"type": "once", "at": at}))
    await jobs.create(api, http_job(sink.url(path + "/every"),
                                    {"type": "interval", "every_seconds": 1}))
    await sink.wait_for(path + "/every", 1, timeout=10)

    await redis.flushdb()  # as if Redis came back empty, without its AOF

    async def rebuilt() -> bool:
        return bool(await redis.exists("dt:epoch"))

    await eventually(rebuilt, timeout=10)
    assert len(await sink.wait_for(path + "/once", 1, timeout=15)) == 1
    count = len(sink.hits_for(path + "/every"))
    assert len(await sink.wait_for(path + "/every", count + 2, timeout=10)) >= count + 2
    await wait_runs(api, once, "succeeded")
    await sink.wait_for(path + "/once", 2, timeout=1)  # the point: no second firing follows
    assert len(sink.hits_for(path + "/once")) == 1
