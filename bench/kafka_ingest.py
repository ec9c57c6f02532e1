"""Benchmark: `create` commands persisted per second when they arrive on Kafka (issue 8).

Produces COMMANDS valid `create` commands to `duetime.jobs.commands` as the services'
principal (what the job service does per POST /jobs), as fast as one producer can, then polls
Postgres until every job is stored. Rate = commands / (last row seen - first produce). The
jobs are one-shot a day ahead, so nothing is loaded to fire (the writer still publishes each
job's version and run template in Redis): the writer's ingest alone is measured. Every job
belongs to a tenant of the run's own; its rows and Redis fields are deleted at the end.
Also reports the CPU seconds the writer and Postgres used meanwhile (from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import timedelta

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.common import env, markdown_table, progress, stamp, write_section
from bench.cpu_per_job import stack_cpu_seconds
from duetime.due_set import DueSet
from duetime.kafka import client_options
from duetime.redis_client import redis_client
from duetime.settings import KafkaSettings, RedisSettings
from duetime.timeutil import utcnow
from schemas.events import JobCommand
from schemas.topics import JOB_COMMANDS
from tests.support.kafka import kafka_settings

POLL_S = 0.2


def commands(tenant: str, count: int) -> list[JobCommand]:
    at = (utcnow() + timedelta(days=1)).isoformat()
    spec = {"name": "bench-ingest", "schedule": {"type": "once", "at": at},
            "target": {"type": "http", "url": "http://127.0.0.1:9/never"}}
    issued = utcnow()
    return [JobCommand.model_validate({
        "command_id": uuid.uuid4().hex, "type": "create", "job_id": uuid.uuid4().hex,
        "tenant": tenant, "issued_at": issued, "spec": spec}) for _ in range(count)]


async def produce(settings: KafkaSettings, batch: list[JobCommand]) -> None:
    # Batched like a busy job service would be; acks=all as the services produce.
    producer = AIOKafkaProducer(**client_options(settings), client_id="bench-kafka-ingest",
                                acks="all", enable_idempotence=True, linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(JOB_COMMANDS, cmd.model_dump_json().encode(),
                                       key=(cmd.job_id or "").encode()) for cmd in batch]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def forget(values: dict[str, str], job_ids: list[str]) -> None:
    """Drop what the writer published in Redis for the jobs (nothing of them is due)."""
    settings = RedisSettings(redis_url=values["DUETIME_REDIS_URL"])
    redis = redis_client(settings)
    due = DueSet(redis, settings.due_shards)
    try:
        by_shard: dict[int, list[str]] = {}
        for job_id in job_ids:
            by_shard.setdefault(due.shard_of(job_id), []).append(job_id)
        async with redis.pipeline(transaction=False) as pipe:
            for shard, ids in by_shard.items():
                pipe.hdel(due.key("jobs", shard), *ids)
                pipe.hdel(due.key("specs", shard), *ids)
            await pipe.execute()
    finally:
        await redis.aclose()


async def run(count: int, timeout: float) -> dict[str, float]:
    values = env()
    tenant = f"ingest-{uuid.uuid4().hex[:8]}"
    batch = commands(tenant, count)
    pg = await asyncpg.connect(values["DUETIME_POSTGRES_DSN"])
    try:
        before = stack_cpu_seconds()
        start = time.perf_counter()
        await produce(kafka_settings(values), batch)
        produced = time.perf_counter() - start
        stored = 0
        deadline = start + timeout
        while stored < count and time.perf_counter() < deadline:
            await asyncio.sleep(POLL_S)
            stored = await pg.fetchval("SELECT count(*) FROM jobs WHERE tenant = $1", tenant)
            progress("persisted", stored, count)
        elapsed = time.perf_counter() - start
        after = stack_cpu_seconds()
        ids = [cmd.job_id for cmd in batch if cmd.job_id is not None]
        await pg.execute("DELETE FROM applied_commands WHERE job_id = ANY($1::text[])", ids)
        await pg.execute("DELETE FROM jobs WHERE tenant = $1", tenant)
        await forget(values, ids)
    finally:
        await pg.close()
    writer = after.get("writer", 0.0) - before.get("writer", 0.0)
    postgres = after.get("postgres", 0.0) - before.get("postgres", 0.0)
    # Past the timeout the rate is of the jobs stored by then; the commands still queued are
    # applied later, under the run's tenant (delete its jobs by hand).
    return {"commands": count, "stored": stored, "produced_s": produced, "persisted_s": elapsed,
            "commands_per_s": stored / elapsed,
            "writer_cpu_s": writer, "postgres_cpu_s": postgres,
            "writer_pg_cpu_us_per_job": 1e6 * (writer + postgres) / max(stored, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=50_000)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="stop waiting then (s); the rate is of the jobs stored by then")
    parser.add_argument("--label", default="current code")
    args = parser.parse_args()
    result = asyncio.run(run(args.commands, args.timeout))
    table = markdown_table(result)
    print(table)
    write_section(
        "Kafka ingest: create commands persisted per second",
        f"Last run: {stamp()}, {args.label} (`python -m bench.kafka_ingest --commands "
        f"{args.commands}`). {args.commands} `create` commands (one-shot jobs a day ahead) "
        "produced to `duetime.jobs.commands` as the services' principal, timed from the first "
        "produce until every job is a row in Postgres (polled every 0.2 s, so up to 0.2 s "
        "late). CPU = user + system time of the writer's and Postgres's processes (from /proc) "
        f"over the same span.\n\n{table}",
    )


if __name__ == "__main__":
    main()
