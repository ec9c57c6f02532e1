"""bench.box_speed: the probe times the same work each round and reports best and median."""

from __future__ import annotations

import time

import pytest

from bench import box_speed


def test_the_probe_times_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([0.0, 0.050, 1.0, 1.040, 2.0, 2.070])  # rounds of 50, 40 and 70 ms
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks))
    assert box_speed.probe(rounds=3) == {"best_ms": 40.0, "median_ms": 50.0}


def test_the_work_is_the_same_every_time() -> None:
    assert box_speed.workload() == box_speed.workload() > 0
