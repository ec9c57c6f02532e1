"""How fast this box runs Python right now: one fixed CPU-only workload, timed.

The box is shared with other machines' work, and its speed moves between boxes of the same kind
and within minutes: the same code measured 2,770 and 1,425 floor creates/s (`bench.floor --mode
creates`) on two fresh machines a few hours apart. A figure from one box cannot be set beside
one from another without knowing that, so every saved result
carries this probe (`box_speed`, lower is faster), and `make bench-peers` prints it before and
after its pass.

    python -m bench.box_speed [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

# The work: what the services do most, in pure Python — building dicts, JSON both ways,
# string formatting. On 2026-11-26 one process timed it at 65-72 ms most of the time and at
# 41-44 ms for a few seconds now and then: the host, not the process (docs/benchmarks.md,
# "Machine").
ITEMS = 8_000


def workload() -> int:
    total = 0
    for i in range(ITEMS):
        record = {"id": i, "name": f"job-{i}", "labels": {"team": "a", "n": str(i)},
                  "due": [i, i * 2, i * 3]}
        total += len(json.loads(json.dumps(record))["name"])
    return total


def probe(rounds: int = 5) -> dict[str, float]:
    """The workload timed `rounds` times (ms): the best says what the box can do, the median
    what it did while others used it."""
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        workload()
        timings.append((time.perf_counter() - started) * 1000)
    return {"best_ms": round(min(timings), 1), "median_ms": round(statistics.median(timings), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    result = probe(args.rounds)
    print(json.dumps({"box_speed": result, "at": time.strftime("%H:%M:%S", time.gmtime()),
                      **({"label": args.label} if args.label else {})}))


if __name__ == "__main__":
    main()
