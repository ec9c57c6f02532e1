"""Benchmark: REST creates per second through the gateway, 64 concurrent clients.

Posts JOBS one-shot jobs due in 2099 (they never fire, so only the create path is measured: nginx,
job service, Kafka; the writer persists them behind) as fast as 64 clients can, each client
waiting for its 202 before sending the next. Reports the rate and the latency of accepted POSTs.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench import results
from bench.common import env, write_section
from bench.creates import create_jobs
from bench.sink import PEER_PORTS

NEVER_PORT = 28999  # in the egress allowlist's benchmark range, nothing listens: never called
assert NEVER_PORT not in PEER_PORTS


def bodies(count: int) -> list[dict[str, Any]]:
    return [{"name": f"bench-create-{i}", "schedule": {"type": "once", "at": "2099-01-01T00:00:00Z"},
             "target": {"type": "http", "url": f"http://127.0.0.1:{NEVER_PORT}/never",
                        "method": "POST"}}
            for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    values = env()
    stats = asyncio.run(create_jobs(values["DUETIME_URL"], values["DUETIME_API_KEY"],
                                    bodies(args.jobs), concurrency=args.clients))
    summary = stats.summary()
    saved = results.save("rest_creates", {"clients": args.clients, **summary})
    print(summary)
    r = results.load("rest_creates") or {}
    write_section(
        "REST creates through the gateway",
        f"`python -m bench.rest_creates --jobs {args.jobs} --clients {args.clients}` "
        f"(`make bench`): one-shot jobs due in 2099 posted by {args.clients} concurrent clients, "
        "each waiting for its 202 before the next; 429/503 retried after Retry-After.\n\n"
        "| jobs | accepted | seconds | creates/s | p50 ms | p99 ms | statuses | run | conditions |\n"
        "|---:|---:|---:|---:|---:|---:|---|---|---|\n"
        f"| {args.jobs:,} | {stats.accepted:,} | {stats.seconds:.1f} | {stats.rate:,.0f} "
        f"| {summary['p50_ms']:.1f} | {summary['p99_ms']:.1f} | {summary['statuses']} | {r['at']} "
        f"| {r['conditions']} |")
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
