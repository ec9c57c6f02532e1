"""Shared pieces of the benchmarks: a recording sink, percentiles, the report file."""

from __future__ import annotations

import asyncio
import math
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from tests.support.sink import start_site
from tests.support.stack import stack_env

# The local stack's egress allowlist admits loopback on these ports for benchmark sinks.
BENCH_PORTS = range(28000, 29000)
REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


@dataclass
class Recorder:
    """Records, per run id, when the sink received it and when it was scheduled."""

    received: list[tuple[str, float, float]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        now = time.time()
        run_id = request.headers.get("Idempotency-Key", "")
        scheduled = datetime.fromisoformat(request.headers["X-Duetime-Scheduled-At"]).timestamp()
        self.received.append((run_id, scheduled, now))
        return web.Response(text="ok")


async def start_sink(recorder: Recorder) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = await start_site(runner, ports=BENCH_PORTS)
    return runner, port


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[k]


def summarize(recorder: Recorder, expected: int) -> dict[str, float]:
    counts = Counter(run_id for run_id, _, _ in recorder.received)
    firsts: dict[str, float] = {}
    for run_id, scheduled, at in recorder.received:
        firsts.setdefault(run_id, (at - scheduled) * 1000)
    lateness = list(firsts.values())
    return {
        "expected": expected,
        "delivered": len(firsts),
        "lost": expected - len(firsts),
        "duplicates": sum(c - 1 for c in counts.values()),
        "early": sum(1 for v in lateness if v < 0),
        "p50_ms": percentile(lateness, 50),
        "p95_ms": percentile(lateness, 95),
        "p99_ms": percentile(lateness, 99),
        "max_ms": max(lateness) if lateness else math.nan,
    }


async def await_deliveries(recorder: Recorder, total: int, end: float, label: str) -> None:
    """Until every run id reached the sink or `end` (epoch s), with a progress bar; then a
    moment more, so late duplicates are counted too."""
    while (done := len({r for r, _, _ in recorder.received})) < total and time.time() < end:
        progress(label, done, total)
        await asyncio.sleep(0.5)
    progress(label, len({r for r, _, _ in recorder.received}), total)
    await asyncio.sleep(2)


def progress(label: str, done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def write_section(title: str, body: str) -> None:
    """Replace (or add) the `## title` section of docs/benchmarks.md."""
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    section = f"## {title}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else \
        text.rstrip() + "\n\n" + section
    REPORT.write_text(text.rstrip() + "\n")


def env() -> dict[str, str]:
    values = stack_env()
    if "DUETIME_URL" not in values:
        raise SystemExit("the stack is not running: `make up` first")
    return values


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")



def markdown_table(result: dict[str, float]) -> str:
    lines = [f"| {k} | {v:.1f} |" if isinstance(v, float) else f"| {k} | {v} |"
             for k, v in result.items()]
    return "| metric | value |\n|---|---|\n" + "\n".join(lines)
