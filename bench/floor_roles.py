"""The four processes of the floor pipeline (bench/floor.py): duetime's hops, nothing else.

Each role is what the architecture makes one duetime process do per created-and-fired job,
with the same client libraries and durability settings, and none of duetime's logic (no
validation beyond a pydantic model, no schedules, quotas, leases, retries, alerts, logs or
metrics):

- api: FastAPI under uvicorn (uvloop, httptools) behind nginx; a create is produced to Kafka
  with acks=all and an idempotent producer, and answered 202 only after Kafka acknowledged it.
- writer: one consumer on commands and statuses; a batch of creates is one INSERT with unnest,
  one Redis pipeline of ZADDs and an outcome event each; a batch of statuses one upsert of run
  rows and one update of job rows, in one transaction; offsets committed after.
- dispatcher: every 10 ms one Lua script moves what is due within 100 ms from the due-set to an
  in-flight set; their run requests are produced (linger 0) and, once acknowledged, removed
  from the in-flight set in the next round's pipeline.
- executor: one consumer on run requests; a batch is claimed in one Redis pipeline (SET NX),
  each run waits for its instant, is POSTed with aiohttp and its final status produced
  (linger 5); the batch's offsets are committed after its statuses were acknowledged.

Run as `python -m bench.floor_roles ROLE` with the stack's environment plus FLOOR_API_PORT
(api) — bench/floor.py starts and stops them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import uvicorn
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from fastapi import FastAPI
from pydantic import BaseModel

from bench.common import env
from duetime.kafka import client_options
from duetime.sql import load_queries
from tests.support.kafka import admin_settings

COMMANDS, EVENTS = "bench.floor.commands", "bench.floor.events"
RUNS, STATUS = "bench.floor.runs", "bench.floor.status"
TOPICS = {COMMANDS: 6, EVENTS: 6, RUNS: 12, STATUS: 6}
DUE, INFLIGHT, CLAIMS = "bench:floor:due", "bench:floor:inflight", "bench:floor:claim:"
QUERIES = load_queries("bench", "floor.sql")
LOOKAHEAD_MS, ROUND_S, BATCH = 100, 0.010, 500

POP = """
local items = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, item in ipairs(items) do
  redis.call('ZREM', KEYS[1], item)
  redis.call('ZADD', KEYS[2], ARGV[3], item)
end
return items
"""


def kafka_options() -> dict[str, Any]:
    return client_options(admin_settings(env()))


def producer(linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(**kafka_options(), acks="all", enable_idempotence=True,
                            linger_ms=linger_ms)


def consumer(group: str, *topics: str) -> AIOKafkaConsumer:
    # The services' consumer options (duetime.kafka.consumer) with the executor's and the
    # writer's 20 ms fetch wait.
    return AIOKafkaConsumer(*topics, **kafka_options(), group_id=group, enable_auto_commit=False,
                            auto_offset_reset="earliest", fetch_max_wait_ms=20,
                            max_poll_records=BATCH)


def redis() -> Any:
    from redis.asyncio import Redis
    return Redis.from_url(env()["DUETIME_REDIS_URL"])


class Create(BaseModel):
    job_id: str
    due_ms: int
    url: str


async def api(stop: asyncio.Event) -> None:
    kafka = producer(0)
    await kafka.start()
    app = FastAPI()

    @app.post("/floor", status_code=202)
    async def create(body: Create) -> dict[str, str]:
        await (await kafka.send(COMMANDS, body.model_dump_json().encode(),
                                key=body.job_id.encode()))
        return {"job_id": body.job_id}

    config = uvicorn.Config(app, host="127.0.0.1", port=int(os.environ["FLOOR_API_PORT"]),
                            loop="none", http="httptools", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving
    await kafka.stop()


async def writer(stop: asyncio.Event) -> None:
    import asyncpg
    pg = await asyncpg.connect(env()["DUETIME_POSTGRES_DSN"])
    due = redis()
    events = producer(5)
    source = consumer("bench-floor-writer", COMMANDS, STATUS)
    await events.start()
    await source.start()
    try:
        while not stop.is_set():
            fetched = await source.getmany(timeout_ms=100, max_records=BATCH)
            messages = [m for part in fetched.values() for m in part]
            if not messages:
                continue
            creates = [orjson.loads(m.value) for m in messages if m.topic == COMMANDS]
            finals = [orjson.loads(m.value) for m in messages if m.topic == STATUS]
            sent = []
            async with pg.transaction():
                if creates:
                    await pg.execute(QUERIES["insert_jobs"], [c["job_id"] for c in creates],
                                     [c["due_ms"] for c in creates], [c["url"] for c in creates])
                if finals:
                    await pg.execute(QUERIES["upsert_runs"], [f["run_id"] for f in finals],
                                     [f["job_id"] for f in finals], [f["status"] for f in finals],
                                     [f["code"] for f in finals])
                    await pg.execute(QUERIES["complete_jobs"], [f["job_id"] for f in finals])
            if creates:
                pipe = due.pipeline(transaction=False)
                for c in creates:
                    pipe.zadd(DUE, {orjson.dumps(c): c["due_ms"]})
                await pipe.execute()
                for c in creates:
                    sent.append(await events.send(EVENTS, orjson.dumps(
                        {"job_id": c["job_id"], "outcome": "created"}), key=c["job_id"].encode()))
            await asyncio.gather(*sent)
            await source.commit()
    finally:
        await source.stop()
        await events.stop()
        await due.aclose()
        await pg.close()


async def dispatcher(stop: asyncio.Event) -> None:
    due = redis()
    pop = due.register_script(POP)
    runs = producer(0)
    await runs.start()
    acked: list[bytes] = []
    try:
        while not stop.is_set():
            now = int(time.time() * 1000)
            pipe = due.pipeline(transaction=False)
            if acked:
                pipe.zrem(INFLIGHT, *acked)
            await pop(keys=[DUE, INFLIGHT], args=[now + LOOKAHEAD_MS, BATCH, now], client=pipe)
            items: list[bytes] = (await pipe.execute())[-1]
            sends = [await runs.send(RUNS, item, key=orjson.loads(item)["job_id"].encode())
                     for item in items]
            await asyncio.gather(*sends)
            acked = items
            if len(items) < BATCH:
                await asyncio.sleep(ROUND_S)
    finally:
        await runs.stop()
        await due.aclose()


async def executor(stop: asyncio.Event) -> None:
    claims = redis()
    statuses = producer(5)
    source = consumer("bench-floor-executor", RUNS)
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
    await statuses.start()
    await source.start()
    pending: set[asyncio.Task[None]] = set()

    async def fire(run: dict[str, Any]) -> Any:  # the status send's acknowledgement
        delay = run["due_ms"] / 1000 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        scheduled = datetime.fromtimestamp(run["due_ms"] / 1000, UTC).isoformat()
        async with http.post(run["url"], json={"job_id": run["job_id"]},
                             headers={"Idempotency-Key": run["run_id"],
                                      "X-Duetime-Scheduled-At": scheduled}) as resp:
            code = resp.status
        return await statuses.send(STATUS, orjson.dumps(
            {"run_id": run["run_id"], "job_id": run["job_id"], "status": "succeeded",
             "code": code}), key=run["job_id"].encode())

    async def batch(runs: list[dict[str, Any]], offsets: dict[TopicPartition, int]) -> None:
        pipe = claims.pipeline(transaction=False)
        for run in runs:
            pipe.set(CLAIMS + run["run_id"], b"1", nx=True, px=60_000)
        won = await pipe.execute()
        acks = await asyncio.gather(*(fire(r) for r, ok in zip(runs, won, strict=True) if ok))
        await asyncio.gather(*acks)
        await source.commit(offsets)

    try:
        while not stop.is_set():
            fetched = await source.getmany(timeout_ms=100, max_records=BATCH)
            if not fetched:
                continue
            runs = []
            for part in fetched.values():
                for m in part:
                    run = orjson.loads(m.value)
                    run["run_id"] = f"{run['job_id']}:{run['due_ms']}"
                    runs.append(run)
            offsets = {tp: part[-1].offset + 1 for tp, part in fetched.items()}
            task = asyncio.create_task(batch(runs, offsets))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    finally:
        await http.close()
        await source.stop()
        await statuses.stop()
        await claims.aclose()


ROLES: dict[str, Callable[[asyncio.Event], Awaitable[None]]] = {
    "api": api, "writer": writer, "dispatcher": dispatcher, "executor": executor}


async def main(role: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await ROLES[role](stop)


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1]))
