"""Benchmark: what a round trip costs on this box after the process has been idle.

A firing at 200/s is a few round trips made after ~5 ms of rest: the executor wakes at the
instant, asks Redis for the start verdict (start_run.lua), and posts the call. On this box
(a virtual machine whose idle vCPUs halt: the kernel's guest halt-polling is off) every wake
of a resting process costs extra, so the same round trip is slower the longer the caller rested
before it. This measures that with nothing of duetime in the way: one uvloop process makes
ROUNDS round trips per gap — an EVALSHA through redis-py (the executor's client) to the
stack's Redis, and a POST through aiohttp (the executor's HTTP client) to an nginx sink — with
0, 1, 5 and 20 ms of sleep before each, and reports the percentiles of each.

    python -m bench.idle_wake [--rounds 600]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import uvloop
from redis.asyncio import Redis

from bench import results
from bench.box_speed import probe
from bench.common import env, percentile, stamp, write_section
from bench.sink import NginxSink

GAPS_MS = (0, 1, 5, 20)
KEY = "bench:idle_wake"


async def timed(call: Callable[[], Awaitable[object]], rounds: int,
                gap_ms: int) -> dict[str, float]:
    """Microseconds per round trip, with `gap_ms` of rest before each."""
    took = []
    for _ in range(rounds):
        if gap_ms:
            await asyncio.sleep(gap_ms / 1000)
        started = time.perf_counter()
        await call()
        took.append((time.perf_counter() - started) * 1e6)
    return {f"p{p}_us": round(percentile(took, p)) for p in (50, 90, 99)}


async def measure(redis_url: str, sink_url: str, rounds: int) -> dict[str, dict[str, dict[str, float]]]:
    redis = Redis.from_url(redis_url)
    script = redis.register_script("return redis.call('GET', KEYS[1])")
    out: dict[str, dict[str, dict[str, float]]] = {"redis EVALSHA": {}, "HTTP POST": {}}
    try:
        async with aiohttp.ClientSession() as session:

            async def post() -> None:
                async with session.post(f"{sink_url}/hook/idle-wake/x", data=b"{}") as resp:
                    await resp.read()

            async def evalsha() -> None:
                await script(keys=[KEY], args=[])

            await evalsha()
            await post()  # scripts loaded, connections open before anything is timed
            for gap in GAPS_MS:
                out["redis EVALSHA"][str(gap)] = await timed(evalsha, rounds, gap)
                out["HTTP POST"][str(gap)] = await timed(post, rounds, gap)
    finally:
        await redis.aclose()
    return out


def report(found: dict[str, dict[str, dict[str, float]]], rounds: int,
           box: dict[str, float]) -> str:
    head = ("| round trip | " + " | ".join(f"{g} ms idle before: p50 / p90 / p99 µs"
                                           for g in GAPS_MS) + " |\n"
            + "|---|" + "---|" * len(GAPS_MS) + "\n")
    rows = "\n".join(
        f"| {what} | " + " | ".join(
            f"{by_gap[str(g)]['p50_us']} / {by_gap[str(g)]['p90_us']} / {by_gap[str(g)]['p99_us']}"
            for g in GAPS_MS) + " |"
        for what, by_gap in found.items())
    return (f"Last run: {stamp()} (`python -m bench.idle_wake --rounds {rounds}`, box "
            f"{box['best_ms']} ms by bench.box_speed). One uvloop process, {rounds} round trips "
            "per cell, each after the rest named; Redis is the stack's, the sink an nginx on "
            "loopback.\n\n" + head + rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=600)
    args = parser.parse_args()
    values = env()
    with tempfile.TemporaryDirectory() as tmp:
        sink = NginxSink(Path(tmp)).start()
        try:
            found = uvloop.run(measure(values["DUETIME_REDIS_URL"], sink.url, args.rounds))
        finally:
            sink.stop()
    box = probe()
    results.save("idle_wake", {"rounds": args.rounds, "round_trips": found})
    write_section("Round trips after rest: what waking costs on this box", report(found, args.rounds, box))
    print(report(found, args.rounds, box))


if __name__ == "__main__":
    main()
