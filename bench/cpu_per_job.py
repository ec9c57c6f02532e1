"""Benchmark: CPU of the whole local stack per created-and-fired job (issue 8's budget).

Runs the timers workload (RATE jobs/s for SECONDS s, created through the gateway, fired at a
local sink) and reads, from /proc, the CPU time every process of the stack used meanwhile:
each component's pid file under .stack/run and all of its descendants (Postgres backends,
Kafka's JVM threads are one process). CPU per job = stack CPU seconds / jobs. The benchmark
client and the sink are not counted. Run it against a warm stack; `--label` names the row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import defaultdict
from pathlib import Path

from bench.common import stamp, write_section
from bench.timers import run

RUN_DIR = Path(__file__).resolve().parent.parent / ".stack" / "run"
TICKS = os.sysconf("SC_CLK_TCK")
IDLE_S = 10.0


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds including reaped children) of one process, or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return ppid, (utime + stime + cutime + cstime) / TICKS


def stack_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far per stack component (its process and every descendant)."""
    roots: dict[int, str] = {}
    for pid_file in RUN_DIR.glob("*.pid"):
        try:
            roots[int(pid_file.read_text().split()[0])] = pid_file.stem
        except (OSError, ValueError, IndexError):
            continue
    return cpu_seconds(roots)


def cpu_seconds(roots: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far per named root process, each with every descendant."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)], cpu[int(entry.name)] = stat
    totals: dict[str, float] = defaultdict(float)
    for pid, seconds in cpu.items():
        walk, seen = pid, 0
        while walk in parents and walk not in roots and seen < 64:
            walk, seen = parents[walk], seen + 1
        if walk in roots:
            totals[roots[walk]] += seconds
    return dict(totals)


async def measure(rate: int, seconds: int, lead: float) -> tuple[dict[str, float], dict[str, float]]:
    before = stack_cpu_seconds()
    result = await run(rate, seconds, lead)
    after = stack_cpu_seconds()
    used = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    return result, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--lead", type=float, default=5.0)
    parser.add_argument("--label", default="current code")
    args = parser.parse_args()
    asyncio.run(run(args.rate, 3, args.lead))  # warm-up, not measured
    # The idle stack's rate (consumers' empty fetches, the dispatcher's polling), so the
    # figure can be set beside bench.floor's, which counts only work above idle; after a
    # pause in which the warm-up's last statuses are written.
    time.sleep(3)
    idle_before, t0 = sum(stack_cpu_seconds().values()), time.monotonic()
    time.sleep(IDLE_S)
    idle_rate = (sum(stack_cpu_seconds().values()) - idle_before) / (time.monotonic() - t0)
    t0 = time.monotonic()
    result, used = asyncio.run(measure(args.rate, args.seconds, args.lead))
    window = time.monotonic() - t0
    jobs = args.rate * args.seconds
    total = sum(used.values())
    net = total - idle_rate * window
    parts = ", ".join(f"{name} {sec:.1f}" for name, sec in sorted(used.items(), key=lambda x: -x[1]))
    line = (f"| {args.label} | {jobs} | {int(result['delivered'])} | {result['p99_ms']:.0f} | "
            f"{total:.1f} | {1000 * total / jobs:.2f} | {1000 * net / jobs:.2f} | {parts} |")
    print(line)
    write_section(
        f"CPU per created-and-fired job: {args.label}",
        f"Last run: {stamp()} (`python -m bench.cpu_per_job --rate {args.rate} --seconds "
        f"{args.seconds} --label '{args.label}'`), after a 3 s warm-up. CPU = user + system "
        "time of every stack process (from /proc), benchmark client and sink excluded; "
        f"'above idle' subtracts the idle stack's rate ({idle_rate:.3f} CPU-s/s, measured "
        f"{IDLE_S:.0f} s before) over the {window:.0f} s window.\n\n"
        "| code | jobs | delivered | p99 ms | stack CPU s | CPU ms/job | above idle, ms/job | "
        "CPU s by component |\n"
        f"|---|---|---|---|---|---|---|---|\n{line}",
    )


if __name__ == "__main__":
    main()
