"""Lateness-over-time plots (PNG) for docs/benchmarks.md."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on the benchmark box

import matplotlib.pyplot as plt

from bench.lateness import percentile


def per_second_p99(points: list[tuple[float, int]]) -> tuple[list[float], list[int]]:
    """p99 lateness of the deliveries received in each whole second (x in s after t0)."""
    buckets: dict[int, list[int]] = defaultdict(list)
    for x, late in points:
        buckets[int(x // 1)].append(late)
    xs = sorted(buckets)
    return [x + 0.5 for x in xs], [percentile(sorted(buckets[x]), 99) or 0 for x in xs]


def with_gaps(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
    """The series with a NaN between two seconds that are not neighbours: no line is drawn
    across seconds in which nothing was delivered."""
    gx: list[float] = []
    gy: list[float] = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if i and x - xs[i - 1] > 1:
            gx.append(math.nan)
            gy.append(math.nan)
        gx.append(x)
        gy.append(y)
    return gx, gy


def lateness_png(points: list[tuple[int, int]], t0_ms: int, title: str, path: Path,
                 bound_s: float | None = None, note: str = "") -> Path:
    """Scatter of every delivery (receive time after t0, lateness) with the per-second p99;
    `note` (when and under what conditions it was measured) is printed under the plot, so the
    picture never travels without it."""
    xy = [((recv - t0_ms) / 1000, late) for recv, late in points]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
    if xy:
        ax.scatter([x for x, _ in xy], [y for _, y in xy], s=2, alpha=0.35, linewidths=0,
                   label=f"each delivery ({len(xy):,})")
        sx, sy = per_second_p99(xy)
        gx, gy = with_gaps(sx, [float(y) for y in sy])
        ax.plot(gx, gy, color="crimson", linewidth=1.2, label="p99 of each second")
    if bound_s is not None:
        ax.axvline(bound_s, color="grey", linestyle="--", linewidth=1, label="delivered-by bound")
    ax.set_yscale("symlog", linthresh=10)
    # Early deliveries are errors and rare: give the negative side room only when there are some;
    # headroom above the latest, and t0 always in view, however late the first delivery came.
    ys = [y for _, y in xy] or [0]
    ax.set_ylim(bottom=min(0, *ys), top=max(100, *ys) * 2)
    ax.set_xlim(left=min(0, *(x for x, _ in xy)) - 1 if xy else -1)
    ax.set_xlabel("sink receive time - t0 (s)")
    ax.set_ylabel("lateness = receive - due (ms)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="dimgrey")
    fig.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
