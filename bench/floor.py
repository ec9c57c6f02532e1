"""Benchmark: the architecture's floor — what a created-and-fired job costs on this box when
every hop of duetime's pipeline is kept and everything else is taken away (issue 8).

Starts the four processes of bench/floor_roles.py (api, writer, dispatcher, executor: the
hops and durability settings of ../shared/ARCHITECTURE.md, with the services' libraries and
none of their logic) and an nginx in front of the api, on the running stack's Kafka, Postgres
and Redis (own topics, tables and keys, removed at the end). Then the timers workload of
`bench.cpu_per_job`: RATE jobs/s for SECONDS s created through nginx, fired at an aiohttp sink
in this process, after a 3 s warm-up. CPU per job = CPU of the floor's processes and nginx,
plus what Kafka, Postgres and Redis used beyond their idle rate (measured for 10 s before the
floor starts, with duetime's services idle), divided by the jobs. The gap between this and
`bench.cpu_per_job` is duetime's own work; this figure is what no code inside the
architecture can go below on this box.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from bench.common import (
    env,
    progress,
    stamp,
    write_section,
)
from bench.cpu_per_job import cpu_seconds, stack_cpu_seconds
from bench.creates import CreateStats
from bench.creates import create_jobs as create_jobs_concurrently
from bench.floor_roles import CLAIMS, COMMANDS, DUE, INFLIGHT, QUERIES, TOPICS
from bench.sink import HEAD, NginxSink, _port_is_free
from bench.timers import run
from duetime.kafka import admin_client, client_options
from tests.support.kafka import admin_settings

REPO = Path(__file__).resolve().parent.parent
SHARED = ("kafka", "postgres", "redis")
ROLES = ("api", "writer", "dispatcher", "executor")
IDLE_S = 10.0
CREATES = 20_000
INGESTS = 50_000

GATEWAY = HEAD + """\
    access_log off;
    upstream api {{ server 127.0.0.1:{api}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location /jobs {{
            proxy_pass http://api/floor;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def free_port() -> int:
    for port in range(27300, 27400):
        if _port_is_free(port):
            return port
    raise RuntimeError("no free port in 27300-27399 for the floor's api")


async def set_up(values: dict[str, str]) -> None:
    admin = admin_client(admin_settings(values))
    await admin.start()
    try:
        with contextlib.suppress(KafkaError):  # absent on a first run: nothing to remove
            await admin.delete_topics(list(TOPICS))
    finally:
        await admin.close()
    await asyncio.sleep(2)  # topic deletion is asynchronous in the broker
    admin = admin_client(admin_settings(values))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, n, 1) for t, n in TOPICS.items()])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()
    pg = await asyncpg.connect(values["DUETIME_POSTGRES_DSN"])
    try:
        await pg.execute(QUERIES["drop_tables"])
        await pg.execute(QUERIES["create_tables"])
    finally:
        await pg.close()


async def tear_down(values: dict[str, str]) -> None:
    admin = admin_client(admin_settings(values))
    await admin.start()
    try:
        await admin.delete_topics(list(TOPICS))
    finally:
        await admin.close()
    pg = await asyncpg.connect(values["DUETIME_POSTGRES_DSN"])
    try:
        await pg.execute(QUERIES["drop_tables"])
    finally:
        await pg.close()
    from redis.asyncio import Redis
    redis = Redis.from_url(values["DUETIME_REDIS_URL"])
    try:
        await redis.delete(DUE, INFLIGHT)
        async for key in redis.scan_iter(match=CLAIMS + "*", count=1000):
            await redis.delete(key)
    finally:
        await redis.aclose()


def start_roles(api_port: int, logs: Path) -> dict[str, subprocess.Popen[bytes]]:
    procs = {}
    for role in ROLES:
        with (logs / f"{role}.log").open("ab") as out:
            procs[role] = subprocess.Popen(
                [sys.executable, "-m", "bench.floor_roles", role], cwd=REPO,
                env={**os.environ, "FLOOR_API_PORT": str(api_port)}, stdout=out, stderr=out)
    return procs


def stop_roles(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


async def create_jobs(url: str, sink: str, due: list[float]) -> None:
    """As bench.timers creates them: 16 at a time, each answered 202 after Kafka's ack."""
    sem = asyncio.Semaphore(16)
    done = 0
    async with aiohttp.ClientSession() as session:

        async def one(at: float) -> None:
            nonlocal done
            body = {"job_id": uuid.uuid4().hex, "due_ms": round(at * 1000), "url": sink}
            async with sem, session.post(url, json=body) as resp:
                if resp.status != 202:
                    raise RuntimeError(f"create refused: {resp.status} {await resp.text()}")
            done += 1
            if done % 200 == 0 or done == len(due):
                progress("creating", done, len(due))

        await asyncio.gather(*(one(at) for at in due))


async def create_many(gateway: str, count: int, clients: int) -> CreateStats:
    """bench.rest_creates' load: jobs due in 2099 (stored, never fired)."""
    bodies = [{"job_id": uuid.uuid4().hex, "due_ms": 4_070_908_800_000,
               "url": "http://127.0.0.1:9/never"} for _ in range(count)]
    return await create_jobs_concurrently(gateway, "", bodies, concurrency=clients)


async def ingest(values: dict[str, str], count: int) -> dict[str, float]:
    """bench.kafka_ingest's load: `count` creates produced straight to the commands topic (linger
    5 ms, acks=all), timed until the writer stored the last; rate = stored / elapsed."""
    ids = [uuid.uuid4().hex for _ in range(count)]
    bodies = [orjson.dumps({"job_id": job_id, "due_ms": 4_070_908_800_000,
                            "url": "http://127.0.0.1:9/never"}) for job_id in ids]
    producer = AIOKafkaProducer(**client_options(admin_settings(values)), acks="all",
                                enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024)
    pg = await asyncpg.connect(values["DUETIME_POSTGRES_DSN"])
    await producer.start()
    try:
        base = await pg.fetchval(QUERIES["count_jobs"])
        start = time.perf_counter()
        acks = [await producer.send(COMMANDS, body, key=job_id.encode())
                for job_id, body in zip(ids, bodies, strict=True)]
        await asyncio.gather(*acks)
        stored = 0
        while stored < count and time.perf_counter() - start < 300:
            await asyncio.sleep(0.2)
            stored = await pg.fetchval(QUERIES["count_jobs"]) - base
            progress("persisted", stored, count)
        return {"delivered": stored, "duplicates": 0,
                "p99_ms": stored / (time.perf_counter() - start)}
    finally:
        await producer.stop()
        await pg.close()


def shared_cpu() -> float:
    used = stack_cpu_seconds()
    return sum(used.get(name, 0.0) for name in SHARED)


async def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.post(url, json={}) as resp:
                    if resp.status == 422:  # the api is up: it refused the empty body
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit("the floor's api did not come up (see its log)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--lead", type=float, default=5.0)
    parser.add_argument("--mode", choices=("steady", "burst", "seconds", "creates", "ingest"),
                        default="steady",
                        help="steady: RATE/s for SECONDS s; burst: all RATE x SECONDS due at one "
                             "instant; seconds: each second's RATE due at its start (W3); "
                             "creates: 20,000 creates by 64 clients (bench.rest_creates); "
                             "ingest: 50,000 creates produced to Kafka (bench.kafka_ingest)")
    args = parser.parse_args()
    values = env()
    asyncio.run(set_up(values))
    work = Path(tempfile.mkdtemp(prefix="duetime-floor-"))
    shared_before, t0 = shared_cpu(), time.monotonic()
    time.sleep(IDLE_S)
    idle_rate = (shared_cpu() - shared_before) / (time.monotonic() - t0)
    api_port = free_port()
    procs = start_roles(api_port, work)
    gateway = NginxSink(work / "nginx", GATEWAY, api=api_port).start()
    try:
        asyncio.run(wait_ready(f"{gateway.url}/jobs"))
        # Warm-up, not measured: a cold JIT in Kafka and cold caches cost the first thousands.
        asyncio.run(run(args.rate, 3, args.lead, partial(create_jobs, f"{gateway.url}/jobs"),
                        args.mode if args.mode in ("steady", "burst", "seconds") else "steady"))
        roots = {proc.pid: role for role, proc in procs.items()}
        assert gateway.proc is not None
        roots[gateway.proc.pid] = "nginx"
        before, shared0, t0 = cpu_seconds(roots), shared_cpu(), time.monotonic()
        if args.mode == "creates":
            stats = asyncio.run(create_many(gateway.url, CREATES, 64))
            result = {"delivered": stats.accepted, "duplicates": 0, "p99_ms": stats.rate}
        elif args.mode == "ingest":
            result = asyncio.run(ingest(values, INGESTS))
        else:
            result = asyncio.run(run(args.rate, args.seconds, args.lead,
                                     partial(create_jobs, f"{gateway.url}/jobs"),
                                     args.mode))
        after, shared1, window = cpu_seconds(roots), shared_cpu(), time.monotonic() - t0
    finally:
        gateway.stop()
        stop_roles(procs)
        asyncio.run(tear_down(values))
    used = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in roots.values()}
    used["kafka + postgres + redis, above idle"] = (shared1 - shared0) - idle_rate * window
    jobs = {"creates": CREATES, "ingest": INGESTS}.get(args.mode, args.rate * args.seconds)
    total = sum(used.values())
    parts = ", ".join(f"{name} {sec:.1f}" for name, sec in sorted(used.items(), key=lambda x: -x[1]))
    line = (f"| {jobs} | {int(result['delivered'])} | {int(result['duplicates'])} | "
            f"{result['p99_ms']:.0f} | {total:.1f} | {1000 * total / jobs:.2f} | {parts} |")
    print(line)
    shape = {"burst": f"burst of {jobs:,} due at one instant",
             "seconds": f"{args.rate:,} due at the start of each second for {args.seconds} s",
             "creates": f"{CREATES:,} creates by 64 clients",
             "ingest": f"{INGESTS:,} creates produced to Kafka",
             "steady": f"{args.rate:,}/s for {args.seconds} s"}[args.mode]
    header = "| jobs | delivered | duplicates | p99 ms |"
    if args.mode == "creates":
        header = "| creates | accepted | - | creates/s |"
    elif args.mode == "ingest":
        header = "| commands | stored | - | stored/s |"
    write_section(
        f"The architecture's floor: {shape}",
        f"Last run: {stamp()} (`python -m bench.floor --rate {args.rate} --seconds "
        f"{args.seconds} --mode {args.mode}`, load average "
        f"{os.getloadavg()[0]:.2f} at the end), after a 3 s warm-up. The pipeline of "
        "bench/floor_roles.py: every hop and durability setting of "
        "the architecture, the services' libraries, none of duetime's logic. CPU = its four "
        "processes and its nginx, plus Kafka, Postgres and Redis beyond their idle rate "
        f"(measured {IDLE_S:.0f} s before, {idle_rate:.3f} CPU-s/s with duetime's services "
        "idle).\n\n"
        f"{header} CPU s | CPU ms/job | CPU s by process |\n"
        f"|---|---|---|---|---|---|---|\n{line}",
    )


if __name__ == "__main__":
    main()
