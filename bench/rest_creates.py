"""Benchmark: REST creates per second through the gateway, 64 concurrent clients.

Posts JOBS one-shot jobs due in 2099 (they never fire, so only the create path is measured: nginx,
job service, Kafka; the writer persists them behind) as fast as 64 clients can, each client
waiting for its 202 before sending the next. Reports the rate and the latency of accepted POSTs,
and what a create cost each part of the box: every stack component's CPU (its process tree,
from /proc) from the first POST until the writer has applied the last create, beyond the
component's idle rate (measured for IDLE_S before), and the client's own CPU — the budget that
decides whether a workload's creates fit its lead (docs/benchmarks.md, "Steady 1,000/s").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import results
from bench.common import env, progress, write_section
from bench.cpu_per_job import stack_cpu_seconds
from bench.creates import create_jobs
from bench.sink import PEER_PORTS

NEVER_PORT = 28999  # in the egress allowlist's benchmark range, nothing listens: never called
assert NEVER_PORT not in PEER_PORTS
IDLE_S = 5.0
SETTLE_TIMEOUT_S = 120.0


def bodies(count: int) -> list[dict[str, Any]]:
    return [{"name": f"bench-create-{i}", "schedule": {"type": "once", "at": "2099-01-01T00:00:00Z"},
             "target": {"type": "http", "url": f"http://127.0.0.1:{NEVER_PORT}/never",
                        "method": "POST"}}
            for i in range(count)]


def creates_applied() -> float:
    """The writer's count of creates it applied (its metrics endpoint)."""
    port = os.environ.get("DUETIME_WRITER_PORT", "18103")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "duetime_writer_commands":
            return sum(s.value for s in family.samples if s.name.endswith("_total")
                       and s.labels == {"type": "create", "outcome": "applied"})
    return 0.0


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


async def measure(jobs: int, clients: int) -> dict[str, Any]:
    values = env()
    idle_from = stack_cpu_seconds()
    await asyncio.sleep(IDLE_S)
    idle = {name: used / IDLE_S for name, used in _delta(stack_cpu_seconds(), idle_from).items()}
    applied_before = creates_applied()
    before, client_before, started = stack_cpu_seconds(), time.process_time(), time.monotonic()
    stats = await create_jobs(values["DUETIME_URL"], values["DUETIME_API_KEY"], bodies(jobs),
                              concurrency=clients)
    client = time.process_time() - client_before
    applied = 0.0
    while applied < stats.accepted and time.monotonic() - started < SETTLE_TIMEOUT_S:
        await asyncio.sleep(0.2)
        applied = creates_applied() - applied_before
        progress("applied by the writer", int(applied), stats.accepted)
    window = time.monotonic() - started
    used = _delta(stack_cpu_seconds(), before)
    per_create = max(stats.accepted, 1)
    above_idle = {name: max(0.0, seconds - idle.get(name, 0.0) * window)
                  for name, seconds in used.items()}
    budget_us = {name: round(1e6 * seconds / per_create, 1)
                 for name, seconds in sorted(above_idle.items(), key=lambda kv: -kv[1])
                 if seconds / per_create >= 1e-6}
    return {"summary": stats.summary(), "applied": int(applied), "window_s": round(window, 2),
            "client_us_per_create": round(1e6 * client / per_create, 1),
            "stack_us_per_create": round(sum(budget_us.values()), 1),
            "budget_us_per_create": budget_us}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()
    measured = asyncio.run(measure(args.jobs, args.clients))
    summary = measured.pop("summary")
    saved = results.save("rest_creates", {"clients": args.clients, **summary, **measured})
    print(summary, measured)
    r = results.load("rest_creates") or {}
    budget = ", ".join(f"{name} {us:.0f}" for name, us in measured["budget_us_per_create"].items())
    write_section(
        "REST creates through the gateway",
        f"`python -m bench.rest_creates --jobs {args.jobs} --clients {args.clients}` "
        f"(`make bench`): one-shot jobs due in 2099 posted by {args.clients} concurrent clients, "
        "each waiting for its 202 before the next; 429/503 retried after Retry-After. CPU per "
        "create: each stack component's process tree from the first POST until the writer "
        f"applied the last create ({measured['window_s']} s), beyond its idle rate "
        f"(measured {IDLE_S:.0f} s before); the client is this benchmark's own process.\n\n"
        "| jobs | accepted | seconds | creates/s | p50 ms | p99 ms | statuses | run | conditions |\n"
        "|---:|---:|---:|---:|---:|---:|---|---|---|\n"
        f"| {args.jobs:,} | {summary['accepted']:,} | {summary['seconds']:.1f} "
        f"| {summary['rate_per_s']:,.0f} | {summary['p50_ms']:.1f} | {summary['p99_ms']:.1f} "
        f"| {summary['statuses']} | {r['at']} | {r['conditions']} |\n\n"
        f"CPU per create, µs: stack **{measured['stack_us_per_create']:.0f}** ({budget}), "
        f"client {measured['client_us_per_create']:.0f}.")
    print(f"saved {saved}")


if __name__ == "__main__":
    main()
