"""Benchmark: reads on 1,000,000 jobs through the gateway at a steady 200 requests/s.

Seeds a million jobs of one tenant straight into Postgres with bench.seed_jobs (its
`INSERT ... SELECT generate_series`, 100,000 rows a statement; not through the API, which would
take minutes), gives the tenant an API key, then for DURATION s each sends, open loop at RATE/s:
GET /jobs/{id} of random seeded jobs, and a filtered GET /jobs list. Latency counts from each
request's planned send time, so a stall is not hidden by the clock waiting for it. The seeded
rows and the key are removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg

from bench import results
from bench.common import env, percentile, write_section
from bench.pacing import open_loop, steady_offsets_ms
from bench.seed_jobs import delete, seed
from bench.stack_state import ROOT
from duetime.api_keys import create_key, reload_gateway, revoke_key
from duetime.timeutil import utcnow

TENANT = "bench-reads"
KEYS_FILE = ROOT / ".stack" / "api_keys"
GATEWAY_PID = ROOT / ".stack" / "nginx" / "nginx.pid"
# A dashboard's query: one team's active jobs, newest first (bench.seed_jobs: 35% active,
# 50 teams, so ~7,000 matching rows of the million).
LIST_QUERY = "state=active&label=team:team-07&limit=50"


def seeded_job_id(i: int) -> str:
    """The id bench.seed_jobs gives its i-th job (md5 of "tenant:i")."""
    return hashlib.md5(f"{TENANT}:{i}".encode(), usedforsecurity=False).hexdigest()


async def paced_gets(session: aiohttp.ClientSession, path_of: Callable[[int], str], rate: int,
                     duration_s: float) -> dict[str, Any]:
    offsets = steady_offsets_ms(rate, duration_s)
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    async def one(i: int, planned: float) -> None:
        try:
            async with session.get(path_of(i)) as resp:
                await resp.read()
                statuses[str(resp.status)] += 1
                if resp.status == 200:
                    latencies.append((time.monotonic() - planned) * 1000)
        except aiohttp.ClientError as exc:
            statuses[type(exc).__name__] += 1

    took = await open_loop(offsets, one)
    return {"requests": len(offsets), "ok": len(latencies), "rate_per_s": round(len(offsets) / took, 1),
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies) if latencies else None, "statuses": dict(statuses)}


async def run(count: int, rate: int, duration_s: float) -> dict[str, Any]:
    values = env()
    conn = await asyncpg.connect(values["DUETIME_POSTGRES_DSN"])
    record = None
    try:
        if await conn.fetchval("SELECT count(*) FROM jobs WHERE tenant = $1", TENANT):
            await delete(conn, TENANT)
        took = await seed(conn, TENANT, count, 100_000)
        await conn.execute("VACUUM (ANALYZE) jobs")
        # Write the seeding's dirty pages out now: a checkpoint flushing a million rows' pages
        # during the timed window would be measured as the reads' tail.
        await conn.execute("CHECKPOINT")
        record, key = create_key(KEYS_FILE, TENANT, utcnow())
        reload_gateway(GATEWAY_PID)
        await asyncio.sleep(2)  # nginx's new workers take over
        rng = random.Random(8)
        ids = [seeded_job_id(rng.randint(1, count)) for _ in range(int(rate * duration_s))]
        headers = {"Authorization": f"Bearer {key}"}
        connector = aiohttp.TCPConnector(limit=256)
        async with aiohttp.ClientSession(values["DUETIME_URL"], headers=headers,
                                         connector=connector) as session:
            for path in ("/jobs/" + ids[0], "/jobs?" + LIST_QUERY):  # warm the connections
                async with session.get(path) as resp:
                    if resp.status != 200:
                        raise SystemExit(f"GET {path}: HTTP {resp.status} {await resp.text()}")
                    # An unknown id is a 404; a "pending" 200 (accepted, not yet written) would
                    # time the search service's wait for the writer, not a read.
                    if path.startswith("/jobs/") and (await resp.json())["state"] == "pending":
                        raise SystemExit(f"GET {path}: the seeded job is not there")
            print("  GET /jobs/{id} ...", file=sys.stderr)
            by_id = await paced_gets(session, lambda i: "/jobs/" + ids[i], rate, duration_s)
            print("  GET /jobs?" + LIST_QUERY + " ...", file=sys.stderr)
            listed = await paced_gets(session, lambda i: "/jobs?" + LIST_QUERY, rate, duration_s)
    finally:
        if record is not None:
            revoke_key(KEYS_FILE, record.key_id)
            reload_gateway(GATEWAY_PID)
        await delete(conn, TENANT)
        await conn.close()
    return {"jobs": count, "seed_s": round(took, 1), "rate": rate, "duration_s": duration_s,
            "by_id": by_id, "list": {"query": LIST_QUERY, **listed}}


def row(name: str, r: dict[str, Any]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"
    return (f"| {name} | {r['requests']:,} | {r['ok']:,} | {r['rate_per_s']:.0f} | {ms(r['p50_ms'])} "
            f"| {ms(r['p99_ms'])} | {ms(r['max_ms'])} | {r['statuses']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.jobs, args.rate, args.seconds))
    results.save("reads", result)
    saved = results.load("reads") or {}
    print(result)
    write_section(
        "Reads on 1,000,000 jobs",
        f"`python -m bench.reads` (`make bench`), run {saved['at']}, {saved['conditions']}. "
        f"{args.jobs:,} jobs of one tenant seeded straight into Postgres by `bench.seed_jobs` "
        f"(generate_series inserts, {result['seed_s']:.0f} s; not through the API), "
        f"then {args.rate} requests/s for {args.seconds:g} s each through the gateway, open loop; "
        "latency from each request's planned send time. Goal: p99 ≤ 10 ms.\n\n"
        "| request | sent | 200 | sent/s | p50 ms | p99 ms | max ms | statuses |\n"
        "|---|---:|---:|---:|---:|---:|---:|---|\n"
        + row("GET /jobs/{id} (random seeded job)", result["by_id"]) + "\n"
        + row(f"GET /jobs?{LIST_QUERY}", result["list"]))


if __name__ == "__main__":
    main()

