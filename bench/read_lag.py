"""Benchmark: how long after a 202 the read API shows the job (writes are asynchronous).

Creates JOBS jobs one after another through the gateway and polls GET /jobs/{id} every 2 ms
until it shows the stored job (not `pending`: since ADR 0009 a read right after the 202 is never
a 404; the search service itself waits up to 1 s for the writer, polling every 20 ms); reports
the lag percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from bench.common import env, markdown_table, percentile, progress, stamp, write_section


async def run(jobs: int) -> dict[str, float]:
    values = env()
    lags: list[float] = []
    headers = {"Authorization": f"Bearer {values['DUETIME_API_KEY']}"}
    body = {"name": "bench-read-lag", "schedule": {"type": "once", "at": "2099-01-01T00:00:00Z"},
            "target": {"type": "http", "url": "http://127.0.0.1:9/never"}}
    async with aiohttp.ClientSession(values["DUETIME_URL"], headers=headers) as session:
        for i in range(jobs):
            async with session.post("/jobs", json=body) as resp:
                job_id = (await resp.json())["job_id"]
            accepted = time.perf_counter()
            while True:
                async with session.get(f"/jobs/{job_id}") as got:
                    if got.status == 200 and (await got.json())["state"] != "pending":
                        break
                await asyncio.sleep(0.002)
            lags.append((time.perf_counter() - accepted) * 1000)
            async with session.delete(f"/jobs/{job_id}"):
                pass
            progress("jobs", i + 1, jobs)
    return {"jobs": jobs, "p50_ms": percentile(lags, 50), "p95_ms": percentile(lags, 95),
            "p99_ms": percentile(lags, 99), "max_ms": max(lags)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    result = asyncio.run(run(args.jobs))
    table = markdown_table(result)
    print(table)
    write_section("Read-after-write lag", f"Last run: {stamp()} (`make bench`). Time from "
                  f"`202 Accepted` on POST /jobs until GET /jobs/{{id}} shows the stored job "
                  f"(not `pending`), polled every 2 ms, one job at a time; the search service "
                  f"waits for the writer itself, checking every 20 ms.\n\n{table}")


if __name__ == "__main__":
    main()
