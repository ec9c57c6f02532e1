"""A schedule's peak firing rate, what the per-tenant firing-rate quota adds up (docs/quotas.md)."""

from __future__ import annotations

from typing import Any

import pytest

from duetime.firing_rate import peak_rate
from schemas.api import JobSpec


def spec(schedule: dict[str, Any]) -> JobSpec:
    return JobSpec.model_validate({"name": "r", "schedule": schedule,
                                   "target": {"type": "http", "url": "http://127.0.0.1:1/"}})


@pytest.mark.parametrize(("expression", "gap_seconds"), [
    ("* * * * * *", 1),
    ("*/2 * * * * *", 2),
    ("0,1 * * * * *", 1),  # twice a minute, but two seconds running: rated at its busiest
    ("0,30 * * * * *", 30),
    ("58 * * * * *", 60),  # one second of each minute
    ("*/5 * * * *", 300),  # five fields: minutes first
    ("0 59,0 * * * *", 60),  # 00:59 then 01:00: the wrap round the hour counts
    ("0 0 * * * *", 3600),
    ("@hourly", 3600),
    ("0 0 9,17 * * *", 8 * 3600),
    ("0 30 2 * * *", 86400),
    ("0 0 0 29 2 *", 86400),  # rare, but never counted as more than daily
])
def test_a_cron_expression_is_rated_by_its_shortest_gap(expression: str, gap_seconds: int) -> None:
    assert peak_rate(spec({"type": "cron", "expression": expression})) == pytest.approx(
        1 / gap_seconds)


def test_an_interval_fires_once_per_period_and_one_shots_add_nothing() -> None:
    assert peak_rate(spec({"type": "interval", "every_seconds": 4})) == 0.25
    assert peak_rate(spec({"type": "now"})) == 0
    assert peak_rate(spec({"type": "delay", "seconds": 1})) == 0
