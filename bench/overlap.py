"""Benchmark: timers firing at a steady rate while REST creates run beside them.

The peer harness's 1,000/s workload is decided by how much of its 20,000 creates overlaps the
firing, which the hour's create rate decides (docs/benchmarks.md, "Steady 1,000/s"). This
bench holds the overlap fixed: RATE x SECONDS one-shot timers are created ahead (as
`bench.timers` does), then CREATES jobs due in 2099 are posted by CLIENTS clients from the first
instant on, so the firing shares the box with creating for as long as that takes. It reports the
sink's lateness, the creates' rate, and the executor's own split of each start — the wake (the
process running once the instant has certainly come) and the start verdict's round trip — from
its `duetime_attempt_start_step_seconds` histogram, read before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import timers
from bench.common import env, stamp, write_section
from bench.creates import create_jobs
from bench.rest_creates import bodies

STEP_BUCKETS = ("0.001", "0.005", "0.025")


def executor_steps() -> dict[tuple[str, str], float]:
    """The executor's start-step histogram as {(step, le): count} (cumulative buckets)."""
    port = os.environ.get("DUETIME_EXECUTOR_PORT", "18106")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "duetime_attempt_start_step_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                found[(sample.labels["step"], sample.labels["le"])] = sample.value
    return found


def step_shares(before: dict[tuple[str, str], float],
                after: dict[tuple[str, str], float]) -> dict[str, dict[str, float]]:
    """Per step, the share of the run's starts at or under each of STEP_BUCKETS seconds."""
    shares: dict[str, dict[str, float]] = {}
    for step in ("wake", "verdict"):
        total = after.get((step, "+Inf"), 0) - before.get((step, "+Inf"), 0)
        if total <= 0:
            continue
        shares[step] = {le: (after.get((step, le), 0) - before.get((step, le), 0)) / total
                        for le in STEP_BUCKETS}
    return shares


async def measure(rate: int, seconds: int, creates: int, clients: int,
                  lead: float) -> dict[str, Any]:
    values = env()
    url, key = values["DUETIME_URL"], values["DUETIME_API_KEY"]
    beside: list[asyncio.Task[Any]] = []

    async def create(sink: str, due: list[float]) -> None:
        await timers.create_jobs(url, key, sink, due)

        async def creating() -> Any:
            await asyncio.sleep(max(0.0, due[0] - time.time()))
            return await create_jobs(url, key, bodies(creates), concurrency=clients)
        beside.append(asyncio.create_task(creating()))

    before = executor_steps()
    fired = await timers.run(rate, seconds, lead, create)
    stats = await beside[0]
    after = executor_steps()
    return {"fired": fired, "creates": stats.summary(), "steps": step_shares(before, after)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--creates", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--lead", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for _ in range(args.runs):
        result = asyncio.run(measure(args.rate, args.seconds, args.creates, args.clients,
                                     args.lead))
        print(result)
        fired, created, steps = result["fired"], result["creates"], result["steps"]

        def share(step: str, le: str, steps: dict[str, dict[str, float]] = steps) -> str:
            return f"{steps[step][le] * 100:.0f} %" if step in steps else "-"
        rows.append(
            f"| {stamp()} | {fired['delivered']:,} of {args.rate * args.seconds:,} "
            f"| {fired['lost']} | {fired['duplicates']} | {fired['early']} "
            f"| {fired['p50_ms']:.1f} | {fired['p99_ms']:.1f} | {created['rate_per_s']:,.0f} "
            f"| {share('wake', '0.001')} / {share('wake', '0.005')} "
            f"| {share('verdict', '0.001')} / {share('verdict', '0.005')} |")
    conditions = os.environ.get("BENCH_CONDITIONS") or \
        "conditions not stated (set BENCH_CONDITIONS: what else ran on the box)"
    write_section(
        "Firing beside creates",
        f"`python -m bench.overlap --rate {args.rate} --seconds {args.seconds} --creates "
        f"{args.creates} --clients {args.clients}` (`make bench BENCH=overlap`): "
        f"{args.rate * args.seconds:,} one-shot timers created ahead and fired at {args.rate}/s, "
        f"while {args.clients} clients post {args.creates:,} jobs due in 2099 from the first "
        "instant on — the peer harness's overlap of creating and firing, held fixed. Lateness "
        "at the sink in ms; wake and verdict: the executor's share of starts whose step took "
        f"≤ 1 ms / ≤ 5 ms (`duetime_attempt_start_step_seconds`). {conditions}.\n\n"
        "| run | delivered | lost | duplicates | early | p50 ms | p99 ms | creates/s beside "
        "| wake ≤ 1 / 5 ms | verdict ≤ 1 / 5 ms |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
