"""Benchmark: what one Python process takes to put M webhook calls on the wire at one instant.

W3 (200 recurring jobs due at the start of every second) is, for the executor, M calls due at
the same instant: its p99 can be no better than the time one process needs to issue M calls.
This measures that bound with nothing of duetime in the way: at the start of each of SECONDS
seconds, one aiohttp session on uvloop (as the executor's) posts M requests to the peer
workloads' nginx sink (bench.sink) — headers and body the size of a duetime webhook — and the
lateness is the sink's receive time minus the instant, as W3 measures it. Each arm runs in its
own process (and one arm splits the calls over two, as two executors would); connections are
opened in a warm-up second first (the executor keeps its pool).

    python -m bench.instant_calls [--calls 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import uvloop

from bench.common import percentile, stamp, write_section
from bench.sink import NginxSink, read_arrivals

# The headers a duetime webhook carries (ids, signature), with values of their real lengths.
HEADERS = {
    "Content-Type": "application/json",
    "X-Duetime-Job-Id": "0" * 32,
    "X-Duetime-Scheduled-At": "2026-11-26T16:00:00+00:00",
    "X-Duetime-Attempt": "1",
    "Webhook-Id": "r" * 40,
    "Webhook-Timestamp": "1795708800",
    "Webhook-Signature": "v1," + "s" * 44,
}
BODY = json.dumps({"job_id": "0" * 32, "run_id": "r" * 40, "scheduled_at": "x" * 25,
                   "payload": {"n": 1}}).encode()


async def fire_rounds(url: str, calls: int, seconds: int, per_host: int, tag: str) -> None:
    """At the start of each of `seconds` seconds, `calls` posts; the instant is in the URI."""
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=per_host)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(instant: str, i: int) -> None:
            headers = dict(HEADERS, **{"Idempotency-Key": f"{tag}-{instant}-{i}"})
            async with session.post(f"{url}/hook/{tag}/{instant}", data=BODY,
                                    headers=headers) as resp:
                await resp.read()

        first = int(time.time()) + 1
        for second in range(-1, seconds):  # second -1 opens the connections
            instant = first + second + 1
            await asyncio.sleep(max(0.0, instant - time.time()))
            await asyncio.gather(*(one("warm" if second < 0 else str(instant * 1000), i)
                                   for i in range(calls)))


def _arm(url: str, calls: int, seconds: int, per_host: int, tag: str) -> None:
    uvloop.run(fire_rounds(url, calls, seconds, per_host, tag))


def run_arm(sink: NginxSink, calls: int, seconds: int, per_host: int,
            processes: int) -> dict[str, float]:
    """`calls` at each instant, split over `processes` client processes."""
    tag = uuid.uuid4().hex[:8]
    procs = [multiprocessing.Process(target=_arm, args=(sink.url, calls // processes, seconds,
                                                        per_host, tag))
             for _ in range(processes)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(seconds + 120)
    time.sleep(1.5)  # the sink flushes its log every second
    lateness = [float(a.recv_ms - int(a.uri.rsplit("/", 1)[1]))
                for a in read_arrivals(sink.log, f"/hook/{tag}/") if not a.uri.endswith("/warm")]
    return {"calls": len(lateness), "p50_ms": percentile(lateness, 50),
            "p95_ms": percentile(lateness, 95), "p99_ms": percentile(lateness, 99),
            "max_ms": max(lateness)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    # A fork would copy this process's state into every client; spawn starts them clean.
    multiprocessing.set_start_method("spawn")
    with tempfile.TemporaryDirectory(prefix="instant-calls-") as tmp:
        sink = NginxSink(Path(tmp)).start()
        try:
            for processes, per_host in ((1, 64), (1, args.calls), (2, 64)):
                result = run_arm(sink, args.calls, args.seconds, per_host, processes)
                rows.append({"client": f"{processes} aiohttp process(es) on uvloop, "
                                       f"{per_host} connections each to the host", **result})
                print(rows[-1], flush=True)
        finally:
            sink.stop()
    write_section(
        "Many calls at one instant: what issuing them costs (W3's bound)",
        f"{stamp()} (`python -m bench.instant_calls --calls {args.calls} --seconds "
        f"{args.seconds}`). At the start of each of {args.seconds} seconds aiohttp sessions "
        f"on uvloop (one process, or two with half each) post {args.calls} webhook-sized "
        "requests to the peer workloads' nginx sink; lateness = sink receive - the instant "
        "(ms), as W3 measures it. Nothing of duetime runs in the client: this is what issuing "
        "the calls alone costs here, with the stack idle beside it.\n\n"
        + rows_table(rows))


def rows_table(rows: list[dict[str, object]]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(f"{v:.0f}" if isinstance(v, float) else str(v)
                                for v in row.values()) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
