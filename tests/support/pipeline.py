"""The firing pipeline in-process: writer, a dispatcher's pop and an executor, on a due-set key
prefix of their own, so tests drive each hop by hand and the stack's services never see them.

`Pipeline.pop()` does what the dispatcher does (pop, build run requests, record a paused firing
as skipped); `claim_and_run()` what the executor's consumer does; `persist()` hands every
status the executor and the "dispatcher" produced to the writer, as its consumer would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiokafka import ConsumerRecord
from redis.asyncio import Redis

from dispatcher.requests import dropped_status, run_request
from duetime import kafka
from duetime.due_set import DueSet, Entry, Popped
from duetime.timeutil import now_ms, utcnow
from executor.service import Executor, Topics
from executor.service import Settings as ExecutorSettings
from schemas.event_json import run_request_json
from schemas.events import RunRequested
from schemas.topics import JOB_COMMANDS, RUNS_STATUS
from tests.support.kafka import kafka_options
from writer.service import Settings as WriterSettings
from writer.service import Writer, write_pool


class CapturingExecutor(Executor):
    """The real executor; the statuses it sends are kept for the test's writer instead."""

    sent: list[bytes]

    async def send_status(self, req: RunRequested, event: bytes) -> None:
        self.sent.append(event)


def record(topic: str, key: str, value: bytes | dict[str, Any], offset: int = 0) -> ConsumerRecord:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return ConsumerRecord(topic=topic, partition=0, offset=offset, timestamp=0, timestamp_type=0,
                          key=key.encode(), value=raw, checksum=None,
                          serialized_key_size=len(key), serialized_value_size=len(raw),
                          headers=())


@dataclass
class Pipeline:
    writer: Writer
    due: DueSet
    executor: CapturingExecutor
    pg: asyncpg.Pool[Any]
    job_ids: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    # -- commands ------------------------------------------------------------------------
    def command(self, job_id: str, kind: str, **fields: Any) -> dict[str, Any]:
        return {"command_id": uuid.uuid4().hex, "type": kind, "job_id": job_id,
                "tenant": "dev", "issued_at": utcnow().isoformat(), **fields}

    async def send(self, *commands: dict[str, Any]) -> None:
        await self.writer.handle_batch([record(JOB_COMMANDS, c["job_id"], c, i)
                                        for i, c in enumerate(commands)])

    async def create(self, schedule: dict[str, Any], url: str, **spec: Any) -> str:
        job_id = uuid.uuid4().hex
        self.job_ids.append(job_id)
        body = {"name": "pipeline-test", "schedule": schedule,
                "target": {"type": "http", "url": url}, **spec}
        await self.send(self.command(job_id, "create", spec=body))
        return job_id

    # -- dispatching and executing -------------------------------------------------------
    async def pop(self, lookahead_ms: int = 100) -> list[Popped]:
        """Pop what is due within the lookahead; dropped entries are recorded as the dispatcher
        records them (paused firings as skipped, lost attempts of ended jobs as ended)."""
        now = now_ms()
        popped = await self.due.pop_due(0, now, now + lookahead_ms, 500)
        for p in popped:
            if p.verdict != "run" and (event := dropped_status(p, utcnow())) is not None:
                self.executor.sent.append(kafka.encode(event))
        await self.due.ack_inflight(0, [p.member for p in popped if p.verdict == "run"])
        return popped

    async def claim_and_run(self, popped: Popped) -> str:
        """Claim a popped entry as the executor does and run it in the background."""
        req = RunRequested.model_validate_json(run_request_json(run_request(popped, utcnow())))
        entry = Entry.parse(req.member)
        verdict = await self.due.claim(entry, req.member, self.executor.id, now_ms(), 10_000)
        if verdict == "ok":
            self.tasks.append(asyncio.create_task(
                self.executor.execute(req, entry, req.model_dump_json().encode())))
        return verdict

    async def dispatch(self, lookahead_ms: int = 100) -> list[str]:
        """Pop, and claim and run every runnable entry; returns the claim verdicts."""
        return [await self.claim_and_run(p) for p in await self.pop(lookahead_ms)
                if p.verdict == "run"]

    async def settle(self) -> None:
        await asyncio.wait_for(asyncio.gather(*self.tasks), 30)
        self.tasks.clear()

    async def persist(self) -> None:
        """Hand every status produced so far to the writer (in order), as its consumer would."""
        sent, self.executor.sent[:] = list(self.executor.sent), []
        if sent:
            await self.writer.handle_batch([
                record(RUNS_STATUS, orjson.loads(v)["job_id"], v, i) for i, v in enumerate(sent)])

    # -- reading -------------------------------------------------------------------------
    async def job(self, job_id: str) -> asyncpg.Record:
        row: asyncpg.Record | None = await self.pg.fetchrow(
            "SELECT * FROM jobs WHERE job_id = $1", job_id)
        assert row is not None
        return row

    async def runs(self, job_id: str) -> list[asyncpg.Record]:
        return await self.pg.fetch(
            "SELECT * FROM job_runs WHERE job_id = $1 ORDER BY scheduled_at", job_id)

    def statuses(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for v in self.executor.sent]

    async def members(self) -> list[Entry]:
        raw = await self.due.redis.zrange(self.due.key("due", 0), 0, -1)
        return [Entry.parse(m.decode() if isinstance(m, bytes) else str(m)) for m in raw]


@pytest.fixture
async def pipeline(env: dict[str, str], redis: Redis,
                   pg: asyncpg.Pool[Any]) -> AsyncIterator[Pipeline]:
    tag = uuid.uuid4().hex[:12]
    wsettings = WriterSettings(**kafka_options(env),
                               postgres_dsn=env["DUETIME_POSTGRES_DSN"],
                               redis_url=env["DUETIME_REDIS_URL"], due_shards=1)
    esettings = ExecutorSettings(**kafka_options(env),
                                 redis_url=env["DUETIME_REDIS_URL"], due_shards=1,
                                 executor_id=f"test-{tag}")
    due = DueSet(redis, shards=1, prefix=f"test{tag}")
    topics = Topics(runs=f"test.{tag}.runs", status=f"test.{tag}.status", dlq=f"test.{tag}.dlq")
    pipe: Pipeline | None = None
    try:
        async with write_pool(wsettings) as pool, \
                kafka.producer(wsettings, f"test-{tag}") as producer, \
                aiohttp.ClientSession() as session:
            executor = CapturingExecutor(due, producer, session, esettings, topics)
            executor.sent = []
            pipe = Pipeline(Writer(pool, producer, due, wsettings), due, executor, pg)
            yield pipe
    finally:
        if pipe is not None:
            for task in pipe.tasks:
                task.cancel()
            await pg.execute("DELETE FROM job_runs WHERE job_id = ANY($1::text[])", pipe.job_ids)
            await pg.execute("DELETE FROM applied_commands WHERE job_id = ANY($1::text[])",
                             pipe.job_ids)
            await pg.execute("DELETE FROM jobs WHERE job_id = ANY($1::text[])", pipe.job_ids)
        keys = [k async for k in redis.scan_iter(match=f"{due.prefix}:*")]
        if keys:
            await redis.delete(*keys)
