"""Profiles of every Python service under the 1,000/s timers workload (issue 8: "profiles
first, kept; redo them after each lever").

Runs `bench.cpu_per_job`'s workload against the running stack (a warm-up first, not profiled)
while py-spy samples each service (`--nonblocking`, idle frames left out, so a sample is CPU),
then writes the raw stacks to `docs/perf/<service>.collapsed.txt` (open them in speedscope or
any flame-graph tool) and, to `docs/perf/README.md`'s "Latest profiles" section, the stack CPU
of the run and each service's share by library — the reading starts there.

    python -m bench.profiles [--rate 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.common import stamp
from bench.cpu_per_job import RUN_DIR, measure
from bench.timers import run

ROOT = Path(__file__).resolve().parent.parent
PERF = ROOT / "docs" / "perf"
PY_SPY = Path(sys.executable).parent / "py-spy"
SERVICES = ("executor", "dispatcher", "writer", "job_service", "watcher")
# Our own packages: a sample whose deepest frame outside asyncio is one of these is our code's,
# or the event loop's when asyncio's frames sit below it.
OURS = ("duetime", "executor", "dispatcher", "writer", "job_service", "watcher", "schemas",
        "search_service")
FRAME = re.compile(r"\(([^/():]+)/")


def owner(stack: str) -> str:
    """Who a sample's CPU belongs to: the deepest library on the stack; else `ours` when the
    sample is in our code, `event loop` when it is in asyncio's (uvloop's C code: socket reads
    and writes, timers) under nothing but our code."""
    packages = [m.group(1) for frame in stack.split(";") if (m := FRAME.search(frame))]
    for package in reversed(packages):
        if package == "asyncio":
            continue
        if package in OURS:
            return "ours" if packages[-1] in OURS else "event loop"
        return package
    return "event loop"


def shares(raw: str) -> tuple[int, list[tuple[str, float]]]:
    """Samples and each owner's share (%) of a py-spy raw profile, largest first."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[owner(stack)] += int(n)
    total = sum(counts.values())
    return total, [(k, 100 * v / total) for k, v in counts.most_common()] if total else []


def _pid(service: str) -> int | None:
    try:
        return int((RUN_DIR / f"{service}.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--lead", type=float, default=5.0)
    args = parser.parse_args()
    if not PY_SPY.exists():
        raise SystemExit(f"{PY_SPY} is missing: `make setup` installs the bench extras")
    asyncio.run(run(args.rate, 3, args.lead))  # warm-up, not profiled
    # Long enough for the creates, the lead and the firing; py-spy stops by itself.
    duration = int(args.rate * args.seconds / 1000 + args.seconds + args.lead + 30)
    spies: dict[str, subprocess.Popen[bytes]] = {}
    for service in SERVICES:
        if (pid := _pid(service)) is not None:
            spies[service] = subprocess.Popen(
                [str(PY_SPY), "record", "--nonblocking", "--rate", "50", "--duration",
                 str(duration), "--format", "raw", "--pid", str(pid),
                 "-o", str(PERF / f"{service}.collapsed.txt")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result, used = asyncio.run(measure(args.rate, args.seconds, args.lead))
    for spy in spies.values():
        spy.wait(timeout=duration + 30)
    jobs = args.rate * args.seconds
    total = sum(used.values())
    rows = []
    for service in spies:
        path = PERF / f"{service}.collapsed.txt"
        samples, parts = shares(path.read_text() if path.exists() else "")
        top = ", ".join(f"{name} {pct:.0f} %" for name, pct in parts[:8])
        rows.append(f"| {service} | {used.get(service, 0.0):.1f} | {samples} | {top} |")
    cpu = ", ".join(f"{n} {s:.1f}" for n, s in sorted(used.items(), key=lambda x: -x[1]))
    body = (
        f"Last run: {stamp()} (`python -m bench.profiles --rate {args.rate} --seconds "
        f"{args.seconds}`): {jobs} jobs created through the gateway and fired at "
        f"{args.rate}/s, {int(result['delivered'])} delivered, p99 {result['p99_ms']:.0f} ms; "
        f"stack CPU {total:.1f} s = **{1000 * total / jobs:.2f} ms per created-and-fired job** "
        f"({cpu}). Each sample is charged to the deepest library on its stack; `event loop` is "
        "uvloop's own C code (socket reads and writes, timers), `ours` the project's code.\n\n"
        "| service | CPU s | samples | share of samples by owner |\n|---|---|---|---|\n"
        + "\n".join(rows))
    readme = PERF / "README.md"
    text = readme.read_text()
    section = f"## Latest profiles\n\n{body}\n"
    pattern = re.compile(r"^## Latest profiles\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else \
        text.rstrip() + "\n\n" + section
    readme.write_text(text.rstrip() + "\n")
    print(body)


if __name__ == "__main__":
    main()
