"""Benchmark: one-shot timers due at a steady rate, fired at a local sink.

Creates RATE x SECONDS jobs through the gateway, due at evenly spaced instants starting a
little after they are all created, then measures at the sink: delivered/expected,
duplicates, early firings and lateness percentiles (receive time minus scheduled time).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial

import aiohttp

from bench.common import (
    Recorder,
    await_deliveries,
    env,
    markdown_table,
    progress,
    stamp,
    start_sink,
    summarize,
    write_section,
)


async def create_jobs(url: str, key: str, sink: str, due: list[float]) -> None:
    sem = asyncio.Semaphore(16)
    done = 0
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(i: int, at: float) -> None:
            nonlocal done
            body = {"name": f"bench-{i}",
                    "schedule": {"type": "once",
                                 "at": datetime.fromtimestamp(at, UTC).isoformat()},
                    "target": {"type": "http", "url": sink},
                    "retry": {"max_attempts": 1}}
            async with sem:
                for _ in range(5):
                    async with session.post(f"{url}/jobs", json=body) as resp:
                        if resp.status == 202:
                            break
                        await asyncio.sleep(0.2)
                else:
                    raise RuntimeError(f"could not create job {i}: {resp.status}")
            done += 1
            if done % 200 == 0 or done == len(due):
                progress("creating", done, len(due))

        await asyncio.gather(*(one(i, at) for i, at in enumerate(due)))


Create = Callable[[str, list[float]], Awaitable[None]]


async def run(rate: int, seconds: int, lead: float, create: Create | None = None,
              shape: str = "steady") -> dict[str, float]:
    """`rate` jobs a second for `seconds` s, created by `create(sink_url, due)` — through
    duetime's gateway by default. `shape`: "steady" spreads each second's jobs evenly; "burst"
    makes all of them due at the first instant; "seconds" makes each second's `rate` jobs due
    at its start (the firings of the peer harness's W3, 200 recurring jobs every second)."""
    if create is None:
        values = env()
        create = partial(create_jobs, values["DUETIME_URL"], values["DUETIME_API_KEY"])
    recorder = Recorder()
    runner, port = await start_sink(recorder)
    total = rate * seconds
    # Leave enough time to create every job before the first one is due.
    start = time.time() + lead + total / 400
    offsets: dict[str, Callable[[int], float]] = {
        "steady": lambda i: i / rate, "burst": lambda i: 0.0, "seconds": lambda i: float(i // rate)}
    due = [start + offsets[shape](i) for i in range(total)]
    try:
        await create(f"http://127.0.0.1:{port}/bench", due)
        if time.time() > start:
            raise SystemExit("jobs were created too slowly; raise --lead")
        await await_deliveries(recorder, total, due[-1] + 10, "firing")
    finally:
        await runner.cleanup()
    return summarize(recorder, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--lead", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=10,
                        help="seconds of the same workload first, not measured (0: none)")
    args = parser.parse_args()
    cold = None
    if args.warmup:
        # A freshly started stack (Kafka's JIT, cold caches) is slower for its first thousand
        # firings; the figure that matters is the steady state, the cold one is reported too.
        cold = asyncio.run(run(args.rate, args.warmup, args.lead))
    result = asyncio.run(run(args.rate, args.seconds, args.lead))
    table = markdown_table(result)
    print(table)
    warm = "" if cold is None else (
        f"\n\nThe {args.warmup} s warm-up run before it (not part of the table) had "
        f"lost {cold['lost']}, duplicates {cold['duplicates']}, early {cold['early']}, "
        f"p99 {cold['p99_ms']:.1f} ms, max {cold['max_ms']:.1f} ms.")
    write_section(
        f"Timers at {args.rate}/s for {args.seconds} s",
        f"Last run: {stamp()}, all services co-located on the 2-core dev box "
        f"(`make bench`). Lateness = sink receive time - scheduled time.\n\n{table}{warm}",
    )


if __name__ == "__main__":
    main()
