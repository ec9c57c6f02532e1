"""Benchmark: JOBS recurring jobs firing every second for SECONDS seconds.

All jobs share one `start_at`, so every second JOBS firings are due at the same instant — the
burst a fleet of cron jobs produces at the top of a minute. Measured at the sink like
`bench.timers`: delivered/expected, duplicates, early firings, lateness percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

import aiohttp

from bench.common import Recorder, env, markdown_table, progress, stamp, start_sink, summarize, write_section


async def create_jobs(url: str, key: str, sink: str, jobs: int, start: float,
                      seconds: int) -> list[str]:
    ids: list[str] = []
    headers = {"Authorization": f"Bearer {key}"}
    sem = asyncio.Semaphore(16)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(i: int) -> None:
            body = {"name": f"bench-recurring-{i}",
                    "schedule": {"type": "interval", "every_seconds": 1,
                                 "start_at": datetime.fromtimestamp(start, UTC).isoformat(),
                                 "end_at": datetime.fromtimestamp(start + seconds - 1,
                                                                  UTC).isoformat()},
                    "target": {"type": "http", "url": sink}, "retry": {"max_attempts": 1}}
            async with sem, session.post(f"{url}/jobs", json=body) as resp:
                if resp.status != 202:
                    raise RuntimeError(f"job {i}: HTTP {resp.status}")
                ids.append((await resp.json())["job_id"])
            progress("creating", len(ids), jobs)

        await asyncio.gather(*(one(i) for i in range(jobs)))
    return ids


async def run(jobs: int, seconds: int, lead: float) -> dict[str, float]:
    values = env()
    recorder = Recorder()
    runner, port = await start_sink(recorder)
    start = float(int(time.time() + lead + jobs / 300) + 1)
    total = jobs * seconds
    try:
        await create_jobs(values["DUETIME_URL"], values["DUETIME_API_KEY"],
                          f"http://127.0.0.1:{port}/bench", jobs, start, seconds)
        if time.time() > start:
            raise SystemExit("jobs were created too slowly; raise --lead")
        end = start + seconds + 10
        while time.time() < end and len({r for r, _, _ in recorder.received}) < total:
            progress("firing", len({r for r, _, _ in recorder.received}), total)
            await asyncio.sleep(0.5)
        progress("firing", len({r for r, _, _ in recorder.received}), total)
        await asyncio.sleep(2)
    finally:
        await runner.cleanup()
    return summarize(recorder, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--lead", type=float, default=5.0)
    args = parser.parse_args()
    result = asyncio.run(run(args.jobs, args.seconds, args.lead))
    table = markdown_table(result)
    print(table)
    write_section(
        f"Recurring: {args.jobs} jobs every second for {args.seconds} s",
        f"Last run: {stamp()} (`make bench`). All jobs share one start instant, so each second "
        f"{args.jobs} firings are due at once (a burst); lateness of the last one in a burst "
        f"includes waiting behind the others.\n\n{table}",
    )


if __name__ == "__main__":
    main()
