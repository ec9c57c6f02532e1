"""bench.plots writes the lateness-over-time PNGs of docs/benchmarks.md."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.plots import lateness_png, per_second_p99, with_gaps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("points", [
    [(10_000 + i * 5, i % 40) for i in range(2000)],
    [(10_500, -3), (11_000, 12_000)],    # an early firing and a very late one
    [],                                  # nothing delivered: still a plot, with axes
])
def test_plot_is_a_png_file(tmp_path: Path, points: list[tuple[int, int]]) -> None:
    out = lateness_png(points, 10_000, "W2 steady 200/s", tmp_path / "img" / "w2-200.png",
                       bound_s=80.0, note="2026-11-26 01:00 UTC: development run on a shared box")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert out.stat().st_size > 5_000


def test_per_second_p99_buckets_by_receive_second() -> None:
    xs, ys = per_second_p99([(0.1, 5), (0.9, 7), (1.2, 100), (3.0, 1)])
    assert xs == [0.5, 1.5, 3.5]
    assert ys == [7, 100, 1]


def test_no_p99_line_across_seconds_without_deliveries() -> None:
    gx, gy = with_gaps([0.5, 1.5, 3.5], [7.0, 100.0, 1.0])
    assert gx[:2] == [0.5, 1.5] and math.isnan(gx[2]) and gx[3] == 3.5
    assert gy[:2] == [7.0, 100.0] and math.isnan(gy[2]) and gy[3] == 1.0
