"""Benchmark: what the stack costs when nothing is due — CPU per process of an idle, warm stack.

A scheduler waits most of its life; its consumers' empty fetches, the dispatcher's polling and
the broker answering them are paid every second whether anything fires or not (and they are
part of every per-job figure measured over a window with quiet stretches, as
`bench.cpu_per_job`'s). Reads /proc for each stack component (its process and descendants)
over SECONDS s, REPEAT times, and reports each component's share of one core.
"""

from __future__ import annotations

import argparse
import os
import time

from bench.common import env, stamp, write_section
from bench.cpu_per_job import stack_cpu_seconds


def sample(seconds: float) -> dict[str, float]:
    """Each component's CPU in percent of one core over `seconds`."""
    before, t0 = stack_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    after, window = stack_cpu_seconds(), time.monotonic() - t0
    return {name: 100 * (after[name] - before.get(name, 0.0)) / window for name in after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--label", default="current code")
    args = parser.parse_args()
    env()  # the stack must be up
    runs = [sample(args.seconds) for _ in range(args.repeat)]
    names = sorted(runs[0], key=lambda n: -sum(r.get(n, 0.0) for r in runs))
    rows = []
    for name in [*names, "total"]:
        cells = [sum(r.values()) if name == "total" else r.get(name, 0.0) for r in runs]
        if name == "total" or max(cells) >= 0.1:
            rows.append(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    table = ("| component | " + " | ".join(f"run {i + 1}, % of a core" for i in range(args.repeat))
             + " |\n|---|" + "---:|" * args.repeat + "\n" + "\n".join(rows))
    print(table)
    write_section(
        f"Idle stack: {args.label}",
        f"Last run: {stamp()} (`python -m bench.idle --seconds {args.seconds:.0f} --repeat "
        f"{args.repeat} --label '{args.label}'`, load average {os.getloadavg()[0]:.2f}): a warm "
        "stack with nothing due, each component's CPU (its process and descendants, from "
        "/proc) in percent of one core. Components under 0.1 % are left out.\n\n" + table,
    )


if __name__ == "__main__":
    main()
