"""Seed synthetic jobs into the stack's Postgres, EXPLAIN the search queries on them, clean up.

    python -m bench.seed_jobs                   # 1,000,000 jobs in tenant "seed", plans, delete
    python -m bench.seed_jobs --keep            # leave the rows (delete later with --delete)
    python -m bench.seed_jobs --delete          # only delete the tenant's rows and VACUUM

The plans are those of the real queries in search_service/queries.sql, built from query strings
exactly as GET /jobs builds them (search_service.filters / search_service.listing), run with
EXPLAIN (ANALYZE, BUFFERS) after one warm-up execution. ADR 0005 records a run.

Seeded jobs can never fire: their enqueue_at is NULL (the watcher loads only jobs with one) and
every next_run_at lies in 2090-2099, so even a Redis-loss reload finds nothing due.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import asyncpg

from duetime.sql import load_queries
from search_service import cursors
from search_service.filters import JobsQuery, parse_query
from search_service.listing import jobs_statement
from tests.support.stack import stack_env

QUERIES = load_queries("search_service")

# Names: ten words x 20,000 numbers, each name on 5 jobs. States: 55% completed, 35% active,
# 5% paused, 5% cancelled. Labels: team (50 values), env (3). Created over the last year.
INSERT = """
WITH s AS (
    SELECT i, random() AS r_state, random() AS r_next, random() AS r_created,
           random() AS r_team, random() AS r_type
    FROM generate_series($2::int, $3::int) AS i
), v AS (
    SELECT i,
           (ARRAY['report', 'sync', 'backup', 'cleanup', 'invoice', 'email', 'etl', 'billing',
                  'export', 'reindex'])[1 + i % 10] || '-' || (i / 10) % 20000 AS name,
           CASE WHEN r_state < 0.55 THEN 'completed' WHEN r_state < 0.90 THEN 'active'
                WHEN r_state < 0.95 THEN 'paused' ELSE 'cancelled' END AS state,
           (ARRAY['once', 'delay', 'now', 'interval', 'cron'])[1 + floor(r_type * 5)::int]
               AS schedule_type,
           CASE WHEN i % 10 = 0 THEN 'kafka' ELSE 'http' END AS target_type,
           jsonb_build_object('team', 'team-' || lpad(floor(r_team * 50)::int::text, 2, '0'),
                              'env', (ARRAY['prod', 'staging', 'dev'])[1 + i % 3]) AS labels,
           -- Created in insertion order, as real jobs are, over the last year.
           now() - interval '365 days' * (($4::int - i + r_created) / $4::float8) AS created_at,
           '2090-01-01T00:00:00Z'::timestamptz + r_next * interval '3650 days' AS next_run
    FROM s
)
INSERT INTO jobs (job_id, tenant, name, spec, schedule_type, target_type, state, priority, labels,
                  next_run_at, enqueue_at, created_command, created_at, updated_at)
SELECT md5($1 || ':' || i), $1, name,
       jsonb_build_object('name', name, 'labels', labels,
                          'schedule', jsonb_build_object('type', 'once', 'at', '2099-01-01T00:00:00Z'),
                          'target', jsonb_build_object('type', 'http', 'url', 'http://127.0.0.1:9/seed')),
       schedule_type, target_type, state, 5, labels,
       CASE WHEN state IN ('active', 'paused') THEN next_run END, NULL, 'seed', created_at, created_at
FROM v
"""

DEEP_ROW = """
SELECT created_at, job_id FROM jobs WHERE tenant = $1
ORDER BY created_at DESC, job_id DESC OFFSET 10000 LIMIT 1
"""


def cases(now: datetime, deep_cursor: str) -> list[tuple[str, str]]:
    """(title, query string of GET /jobs) for each plan in the report; all with limit=50."""
    day = timedelta(days=1)
    return [
        ("no filter (created_at_desc)", ""),
        ("state=paused (5%)", "state=paused"),
        ("state=active (35%)", "state=active"),
        ("name= (5 rows)", "name=invoice-1234"),
        ("name= (no match)", "name=nobody"),
        ("q= selective substring (55 rows)", "q=VOICE-1234"),
        ("q= common substring (10%)", "q=sync"),
        ("q= no match", "q=zzzz"),
        ("q= without a trigram, no match (worst case: every row of the tenant)", "q=zq"),
        ("label= one label (2%)", "label=team:team-07"),
        ("label= two labels (0.7%)", "label=team:team-07&label=env:prod"),
        ("label= (no match)", "label=team:nobody"),
        ("next_run_before= (0.5%)", "next_run_before=2090-03-01T00:00:00Z"),
        ("next_run_before= (0.004%)", "next_run_before=2090-01-02T00:00:00Z"),
        ("next_run_after= (4%)", "next_run_after=2099-08-01T00:00:00Z"),
        ("created range (one day, 0.3%)",
         f"created_after={(now - 30 * day).isoformat()}&created_before={(now - 29 * day).isoformat()}"
         .replace("+", "%2B")),
        ("state + label + schedule_type", "state=paused&label=team:team-07&schedule_type=cron"),
        ("sort=next_run_at_asc", "sort=next_run_at_asc"),
        ("sort=name_asc", "sort=name_asc"),
        ("state=active&sort=next_run_at_asc", "state=active&sort=next_run_at_asc"),
        ("page 201 (cursor after 10,000 rows)", f"cursor={deep_cursor}"),
    ]


async def seed(conn: asyncpg.Connection[Any], tenant: str, count: int, batch: int) -> float:
    await conn.execute("SELECT setseed(0.42)")
    started = time.monotonic()
    for first in range(1, count + 1, batch):
        last = min(count, first + batch - 1)
        await conn.execute(INSERT, tenant, first, last, count)
        print(f"  inserted {last:,} jobs ({time.monotonic() - started:.1f}s)", file=sys.stderr)
    return time.monotonic() - started


async def explain(conn: asyncpg.Connection[Any], tenant: str, query_string: str) -> str:
    params = parse_query(JobsQuery, parse_qsl(query_string, keep_blank_values=True))
    statement = jobs_statement(params, tenant)
    sql = QUERIES[statement.query]
    await conn.fetch(sql, *statement.args)  # warm-up: report the steady state, not a cold cache
    rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *statement.args)
    return "\n".join(r[0] for r in rows)


async def explain_counts(conn: asyncpg.Connection[Any], tenant: str) -> str:
    sql = QUERIES["job_counts"]
    await conn.fetch(sql, tenant)
    rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, tenant)
    return "\n".join(r[0] for r in rows)


async def report(conn: asyncpg.Connection[Any], tenant: str) -> str:
    now = datetime.now(UTC)
    deep = await conn.fetchrow(DEEP_ROW, tenant)
    assert deep is not None
    deep_cursor = cursors.encode("created_at_desc", deep["created_at"], deep["job_id"])
    out = []
    for title, query_string in cases(now, deep_cursor):
        shown = query_string if len(query_string) < 90 else query_string[:87] + "..."
        plan = await explain(conn, tenant, query_string)
        out.append(f"#### {title}\n`GET /jobs?{shown}`\n```\n{plan}\n```\n")
    out.append(f"#### GET /stats: job counts\n```\n{await explain_counts(conn, tenant)}\n```\n")
    return "\n".join(out)


async def delete(conn: asyncpg.Connection[Any], tenant: str) -> None:
    started = time.monotonic()
    deleted = await conn.execute("DELETE FROM jobs WHERE tenant = $1", tenant)
    await conn.execute("VACUUM (ANALYZE) jobs")
    # VACUUM gives the heap back but only frees index pages for reuse: rebuild the indexes so
    # the stack is as small as before. CONCURRENTLY: the running services keep reading and writing.
    await conn.execute("REINDEX TABLE CONCURRENTLY jobs")
    size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('jobs'))")
    print(f"{deleted} for tenant {tenant!r}, vacuumed and reindexed: jobs is {size} "
          f"({time.monotonic() - started:.1f}s)", file=sys.stderr)


async def main(args: argparse.Namespace) -> None:
    conn = await asyncpg.connect(args.dsn)
    try:
        if args.delete:
            await delete(conn, args.tenant)
            return
        if await conn.fetchval("SELECT count(*) FROM jobs WHERE tenant = $1", args.tenant):
            raise SystemExit(f"tenant {args.tenant!r} already has jobs: run with --delete first")
        try:
            took = await seed(conn, args.tenant, args.count, args.batch)
            # What autovacuum reaches soon after a bulk insert: statistics and the visibility map.
            await conn.execute("VACUUM (ANALYZE) jobs")
            total = await conn.fetchval("SELECT count(*) FROM jobs")
            size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('jobs'))")
            print(f"### {args.count:,} jobs seeded in {took:.1f}s "
                  f"(jobs: {total:,} rows, {size} with indexes)\n")
            print(await report(conn, args.tenant))
        finally:
            if not args.keep:
                await delete(conn, args.tenant)
    finally:
        await conn.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=stack_env().get("DUETIME_POSTGRES_DSN"))
    parser.add_argument("--tenant", default="seed")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="leave the seeded rows in place")
    parser.add_argument("--delete", action="store_true", help="only delete the tenant's rows")
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error("no --dsn and no running stack (.stack/env)")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
