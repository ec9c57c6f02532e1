"""Benchmark: schedule.next_fire calls per second for cron jobs (no stack needed).

The writer asks for the next fire time after every run of a recurring job, so this call sits on
the firing path. Each case calls next_fire the way the writer does, with `after` set to the
previous answer, for CYCLE calls from 2026-01-01 00:00 UTC and then again from there (so the
per-year offset-change cache is warm, as in a long-running writer); the best of three timed
rounds counts, as the box is shared.

    .venv/bin/python -m bench.cron_next_fire [--seconds 1] [--against REV ...]

`--against REV` also measures the duetime/ and schemas/ of a git revision (extracted to a
temporary directory and run in a child process), so one run prints before and after.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from bench.revisions import add_revision_options, figures_per_column

CASES = (("* * * * * *", "Europe/Berlin"), ("*/5 * * * * *", "Europe/Berlin"),
         ("0 30 2 * * *", "Europe/Berlin"))
CYCLE = 500
START = datetime(2026, 1, 1, tzinfo=UTC)


def calls_per_second(expression: str, timezone: str, seconds: float) -> float:
    from duetime import schedule  # imported here so --against measures the revision's copy
    from schemas.api import JobSpec

    spec = JobSpec.model_validate({"name": "bench", "target": {"type": "http", "url": "http://x/y"},
                                   "schedule": {"type": "cron", "expression": expression,
                                                "timezone": timezone}})

    def run(limit: float, most: int) -> tuple[int, float]:
        """Calls made and seconds taken, stopping at `limit` seconds or `most` calls."""
        calls, after, began = 0, START, time.perf_counter()
        while calls < most and time.perf_counter() - began < limit:
            nxt = schedule.next_fire(spec, START, after)
            assert nxt is not None
            calls += 1
            after = START if calls % CYCLE == 0 else nxt
        return calls, time.perf_counter() - began

    run(seconds, CYCLE)  # warm the caches (the slow croniter-era code may not finish a cycle)
    return max(calls / elapsed for calls, elapsed in (run(seconds / 3, 10**9) for _ in range(3)))


def measure(seconds: float) -> list[float]:
    return [calls_per_second(expression, timezone, seconds) for expression, timezone in CASES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per case")
    add_revision_options(parser)
    args = parser.parse_args()
    found = figures_per_column(args, "bench.cron_next_fire", lambda: measure(args.seconds),
                               "--seconds", str(args.seconds))
    if found is None:
        return
    columns, rows = found
    print("| expression | zone | " + " | ".join(f"`{c}` calls/s" for c in columns) + " |")
    print("|---|---|" + "---:|" * len(columns))
    for i, (expression, timezone) in enumerate(CASES):
        cells = " | ".join(f"{row[i]:,.0f}" for row in rows)
        print(f"| `{expression}` | {timezone} | {cells} |")


if __name__ == "__main__":
    main()
