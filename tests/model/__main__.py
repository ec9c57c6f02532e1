"""`make model SEED=… MINUTES=…`: replay one seed, or soak — consecutive seeds from SEED for
MINUTES — against the running stack, printing each history's figures and the totals."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter

import asyncpg
import httpx

from tests.model.workload import run
from tests.support.stack import stack_env


async def main(seed: int, minutes: float, seconds: float, settle: float) -> int:
    env = stack_env()
    headers = {"Authorization": f"Bearer {env['DUETIME_API_KEY']}"}
    pool = await asyncpg.create_pool(env["DUETIME_POSTGRES_DSN"], min_size=1, max_size=4)
    assert pool is not None
    totals: Counter[str] = Counter()
    kinds: Counter[str] = Counter()  # faults injected, by what the nemesis did
    failed = histories = 0
    deadline = time.monotonic() + minutes * 60
    try:
        async with httpx.AsyncClient(base_url=env["DUETIME_URL"], headers=headers,
                                     timeout=30) as api:
            while True:
                report = await run(api, pool, env, seed, seconds=seconds, settle=settle)
                totals.update(report.figures())
                kinds.update(f"{f.kind} {f.service}" if f.kind in ("kill", "stop") else f.kind
                             for f in report.faults)
                print(report.explain() if not report.ok else f"seed {seed}: {report.figures()}",
                      flush=True)
                failed += not report.ok
                histories += 1
                seed += 1
                if time.monotonic() >= deadline:
                    break
    finally:
        await pool.close()
    print(f"{histories} histories, totals {dict(totals)}, failed {failed}")
    print(f"faults by kind: {dict(sorted(kinds.items()))}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=0, help="0: one history")
    parser.add_argument("--seconds", type=float, default=45, help="length of one history")
    parser.add_argument("--settle", type=float, default=20,
                        help="how long to wait for owed firings after the history; under a "
                             "backlog (a background load) as long as the backlog takes to drain")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.seed, args.minutes, args.seconds, args.settle)))
