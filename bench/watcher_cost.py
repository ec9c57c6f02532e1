"""Benchmark: the watcher's CPU with 10,000 vs 1,000,000 active jobs, all due far in the future.

The watcher polls every second for jobs whose cursor (`enqueue_at`) falls within its window; its
cost should depend on what is due soon, not on how many jobs exist. The jobs are seeded straight
into Postgres (one `INSERT ... SELECT generate_series` per 100,000 rows, bench/queries.sql: not
through the API, which would take minutes for a million), in their own tenant, due 2090-2099.
After each seed: VACUUM (ANALYZE), a short settle, then the watcher's CPU seconds (user + system
from /proc, its process and children) over a fixed window, and Postgres's beside it. The seeded
rows are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import asyncpg

from bench import results
from bench.common import env, write_section
from bench.cpu_per_job import stack_cpu_seconds
from bench.seed_jobs import delete
from duetime.sql import load_queries

QUERIES = load_queries("bench")
TENANT = "bench-watcher"
BATCH = 100_000


async def seed_to(conn: asyncpg.Connection[Any], first: int, last: int) -> float:
    started = time.monotonic()
    for low in range(first, last + 1, BATCH):
        high = min(last, low + BATCH - 1)
        await conn.execute(QUERIES["seed_future_active"], TENANT, low, high)
        print(f"  seeded {high:,} active jobs ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    await conn.execute("VACUUM (ANALYZE) jobs")
    return time.monotonic() - started


async def watcher_cpu(window_s: float, settle_s: float) -> dict[str, float]:
    await asyncio.sleep(settle_s)
    before = stack_cpu_seconds()
    await asyncio.sleep(window_s)
    after = stack_cpu_seconds()
    if "watcher" not in after:
        raise SystemExit("no watcher process found under .stack/run: is the stack up?")
    return {k: round(after[k] - before.get(k, 0.0), 3) for k in ("watcher", "postgres")
            if k in after}


async def run(small: int, large: int, window_s: float, settle_s: float) -> dict[str, Any]:
    conn = await asyncpg.connect(env()["DUETIME_POSTGRES_DSN"])
    try:
        if await conn.fetchval("SELECT count(*) FROM jobs WHERE tenant = $1", TENANT):
            await delete(conn, TENANT)
        rows = []
        seeded = 0
        try:
            for target in (small, large):
                took = await seed_to(conn, seeded + 1, target)
                seeded = target
                active = await conn.fetchval(QUERIES["active_with_cursor"])
                cpu = await watcher_cpu(window_s, settle_s)
                rows.append({"seeded": target, "active_with_cursor": active,
                             "seed_s": round(took, 1), **{f"{k}_cpu_s": v for k, v in cpu.items()}})
                print(f"  {target:,} seeded ({active:,} active): {cpu}", file=sys.stderr)
        finally:
            await delete(conn, TENANT)
    finally:
        await conn.close()
    small_cpu, large_cpu = rows[0]["watcher_cpu_s"], rows[1]["watcher_cpu_s"]
    return {"window_s": window_s, "rows": rows,
            "ratio": round(large_cpu / small_cpu, 2) if small_cpu > 0 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--window", type=float, default=30.0, help="seconds of CPU measured")
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.small, args.large, args.window, args.settle))
    results.save("watcher_cost", result)
    saved = results.load("watcher_cost") or {}
    print(result)
    lines = "\n".join(
        f"| {r['seeded']:,} | {r['active_with_cursor']:,} | {r['seed_s']:.0f} "
        f"| {r['watcher_cpu_s']:.2f} | {r.get('postgres_cpu_s', float('nan')):.2f} |"
        for r in result["rows"])
    write_section(
        "Watcher cost with 10,000 vs 1,000,000 active jobs",
        f"`python -m bench.watcher_cost` (`make bench`), run {saved['at']}, "
        f"{saved['conditions']}. Active one-shot jobs due 2090-2099 seeded straight into "
        "Postgres (`INSERT ... SELECT generate_series`, not through the API); CPU of the watcher "
        f"process over {args.window:g} s after each seed, Postgres's beside it (all backends, "
        "not only the watcher's).\n\n"
        "| seeded jobs | active jobs with a cursor | seed s | watcher CPU s | Postgres CPU s |\n"
        f"|---:|---:|---:|---:|---:|\n{lines}\n\n"
        f"Watcher CPU ratio, {args.large:,} / {args.small:,}: **{result['ratio']}** (goal ≤ 2).")


if __name__ == "__main__":
    main()
