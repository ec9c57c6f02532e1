"""The dashboard's two pictures as bar geometry, drawn as inline SVG by the templates.

Pure functions of query rows: no I/O, no JavaScript library; unit-tested in tests/unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# Lateness buckets in ms (the bounds width_bucket gets): below 0 is an early start.
LATENESS_BOUNDS_MS: tuple[int, ...] = (0, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
WIDTH, HEIGHT = 600, 160
_PLOT = HEIGHT - 20  # room for the axis labels under the bars
_MARGIN = 16  # so the first and last labels are not cut


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    height: float  # of the whole bar
    failed_height: float  # of its failed part, drawn over it
    value: int
    failed: int
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    total: int
    width: int = WIDTH
    height: int = HEIGHT
    plot_height: int = _PLOT


def _bars(counts: Sequence[tuple[str, int, int]]) -> list[Bar]:
    top = max((n for _, n, _ in counts), default=0) or 1
    step = (WIDTH - 2 * _MARGIN) / max(1, len(counts))
    return [Bar(x=_MARGIN + i * step + 1, width=max(1.0, step - 2), height=_PLOT * n / top,
                failed_height=_PLOT * failed / top, value=n, failed=failed, label=label)
            for i, (label, n, failed) in enumerate(counts)]


def _ms(value: int) -> str:
    return f"{value / 1000:g}s" if value >= 1000 else str(value)


def lateness_label(bucket: int) -> str:
    """Short enough to sit under its bar: "early", "25-50", "500-1s", "≥10s" (ms unless s)."""
    bounds = LATENESS_BOUNDS_MS
    if bucket <= 0:
        return "early"
    if bucket >= len(bounds):
        return f"≥{_ms(bounds[-1])}"
    return f"{_ms(bounds[bucket - 1])}-{_ms(bounds[bucket])}"


def lateness_histogram(rows: Sequence[Any]) -> Chart:
    """Rows of (bucket, n) from the lateness_histogram query, every bucket shown."""
    counts = dict.fromkeys(range(len(LATENESS_BOUNDS_MS) + 1), 0)
    for row in rows:
        bucket = min(max(int(row["bucket"]), 0), len(LATENESS_BOUNDS_MS))
        counts[bucket] += int(row["n"])
    return Chart("Lateness of runs in ms, last hour",
                 _bars([(lateness_label(b), n, 0) for b, n in counts.items()]),
                 sum(counts.values()))


def firings_over_time(rows: Sequence[Any], start: datetime, minutes: int) -> Chart:
    """Rows of (minute, total, failed) from firings_per_minute: one bar per minute from `start`,
    minutes without a run drawn empty."""
    by_minute = {row["minute"]: (int(row["total"]), int(row["failed"])) for row in rows}
    counts = []
    for i in range(minutes):
        at = start + timedelta(minutes=i)
        total, failed = by_minute.get(at, (0, 0))
        counts.append((at.strftime("%H:%M"), total, failed))
    return Chart("Runs per minute, last hour (failed in red)", _bars(counts),
                 sum(n for _, n, _ in counts))


@dataclass(frozen=True)
class Mark:
    x: float
    status: str
    label: str  # what its tooltip says


@dataclass(frozen=True)
class Timeline:
    marks: list[Mark]
    first: str
    last: str
    width: int = WIDTH
    height: int = 28


def runs_timeline(runs: Sequence[Any]) -> Timeline:
    """Runs as run_view returns them (any order), one mark per run at its due instant, from the
    oldest (left) to the newest (right); runs due at one instant share a place."""
    due = sorted((datetime.fromisoformat(r["scheduled_at"]), r) for r in runs
                 if r.get("scheduled_at"))
    if not due:
        return Timeline([], "", "")
    start, end = due[0][0], due[-1][0]
    span = (end - start).total_seconds() or 1.0
    usable = WIDTH - 2 * _MARGIN
    marks = [Mark(x=_MARGIN + usable * (at - start).total_seconds() / span, status=r["status"],
                  label=f"{r['scheduled_at']} {r['status']}"
                        + (f": {r['error']}" if r.get("error") else "")
                        + (f" ({r['reason']})" if r.get("reason") else ""))
             for at, r in due]
    return Timeline(marks, due[0][1]["scheduled_at"], due[-1][1]["scheduled_at"])
