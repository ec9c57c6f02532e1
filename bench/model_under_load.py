"""Correctness under load: the model checker's history beside a steady background load.

Issue 8's acceptance: the guarantees hold at 1,000 firings/s, not only when the box is idle.
RATE x SECONDS one-shot timers (one attempt each, as bench.timers) fire at a recording sink
while one model history (tests/model: random commands through the gateway, a nemesis
restarting Redis and Postgres and crashing or freezing services) runs in the middle of their
firing window. When more is due than the box can fire, requests queue up in the executors:
the model then waits (`--settle`) for that backlog to drain before it judges.

Reports the model's verdict and the background's delivered / lost / duplicated / early firings
and lateness; exits non-zero if the model failed or the background lost or repeated a firing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import asyncpg
import httpx

from bench import results
from bench.common import (
    Recorder,
    await_deliveries,
    env,
    markdown_table,
    stamp,
    start_sink,
    summarize,
    write_section,
)
from bench.timers import create_jobs
from tests.model.workload import Report, run

# REST creates per second the schedule assumes when it places the first instant after them.
CREATE_RATE = 1500


async def _model(values: dict[str, str], seed: int, seconds: float, settle: float) -> Report:
    pool = await asyncpg.create_pool(values["DUETIME_POSTGRES_DSN"], min_size=1, max_size=4)
    assert pool is not None
    headers = {"Authorization": f"Bearer {values['DUETIME_API_KEY']}"}
    try:
        async with httpx.AsyncClient(base_url=values["DUETIME_URL"], headers=headers,
                                     timeout=30) as api:
            return await run(api, pool, values, seed, seconds=seconds, settle=settle)
    finally:
        await pool.close()


async def measure(rate: int, seconds: int, seed: int, settle: float,
                  lead: float) -> tuple[Report, dict[str, float]]:
    values = env()
    recorder = Recorder()
    runner, port = await start_sink(recorder)
    total = rate * seconds
    start = time.time() + lead + total / CREATE_RATE
    due = [start + i / rate for i in range(total)]
    try:
        await create_jobs(values["DUETIME_URL"], values["DUETIME_API_KEY"],
                          f"http://127.0.0.1:{port}/load", due)
        behind = time.time() - start
        if behind > 0:
            print(f"creating took {behind:.1f} s past the first instant: the load starts "
                  "with a backlog", file=sys.stderr)
        await asyncio.sleep(max(0.0, start + min(5.0, seconds / 4) - time.time()))
        # The model's history (and its settling) while the load fires and drains.
        report = await _model(values, seed, min(45.0, seconds), settle)
        await await_deliveries(recorder, total, due[-1] + settle, "load")
    finally:
        await runner.cleanup()
    return report, summarize(recorder, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=45)
    parser.add_argument("--seed", type=int, default=401)
    parser.add_argument("--settle", type=float, default=120,
                        help="seconds the model (and the load) may take to drain a backlog")
    parser.add_argument("--lead", type=float, default=5.0)
    args = parser.parse_args()
    report, load = asyncio.run(measure(args.rate, args.seconds, args.seed, args.settle, args.lead))
    figures = report.figures()
    if not report.ok:
        print(report.explain())
    print(json.dumps({"model": figures, "load": load}))
    results.save("model_under_load", {"rate": args.rate, "seconds": args.seconds,
                                      "seed": args.seed, "model_ok": report.ok,
                                      "model": figures, "load": load})
    faults = ", ".join(f"{f.kind} {f.service}" for f in report.faults) or "none"
    write_section(
        "Model checker beside a steady load",
        f"Last run: {stamp()} ({results.conditions()}). {args.rate} one-shot timers/s for "
        f"{args.seconds} s (one attempt each) at a recording sink; in the middle of their firing "
        f"window one model history (seed {args.seed}, faults: {faults}), judged after up to "
        f"{args.settle:.0f} s for the backlog to drain (`make bench BENCH=model_load`).\n\n"
        f"Model: **{'passed' if report.ok else 'FAILED'}** — "
        + ", ".join(f"{k} {v}" for k, v in figures.items())
        + f".\n\nBackground load:\n\n{markdown_table(load)}",
    )
    sys.exit(0 if report.ok and load["lost"] == 0 and load["duplicates"] == 0 else 1)


if __name__ == "__main__":
    main()
