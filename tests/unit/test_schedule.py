"""Schedule math, including DST in real zones and expressions that can never fire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from duetime import schedule
from schemas.api import JobSpec

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def spec(sched: dict[str, Any], **extra: Any) -> JobSpec:
    return JobSpec.model_validate({"name": "t", "schedule": sched,
                                   "target": {"type": "http", "url": "http://x/y"}, **extra})


def cron(expr: str, tz: str = "UTC", **extra: Any) -> JobSpec:
    return spec({"type": "cron", "expression": expr, "timezone": tz, **extra})


def test_one_shot_fire_times() -> None:
    assert schedule.first_fire(spec({"type": "now"}), T0) == T0
    assert schedule.first_fire(spec({"type": "delay", "seconds": 1.5}), T0) == T0 + timedelta(seconds=1.5)
    at = datetime(2030, 5, 1, 12, tzinfo=UTC)
    assert schedule.first_fire(spec({"type": "once", "at": at.isoformat()}), T0) == at
    assert schedule.next_fire(spec({"type": "now"}), T0, T0) is None


def test_interval_from_creation_and_from_start() -> None:
    every = spec({"type": "interval", "every_seconds": 10})
    assert schedule.preview(every, T0, T0, 3) == [T0 + timedelta(seconds=s) for s in (10, 20, 30)]
    start = T0 + timedelta(hours=1)
    anchored = spec({"type": "interval", "every_seconds": 60, "start_at": start.isoformat(),
                     "end_at": (start + timedelta(minutes=2)).isoformat()})
    assert schedule.preview(anchored, T0, T0, 10) == [start, start + timedelta(minutes=1),
                                                        start + timedelta(minutes=2)]


def test_six_field_cron_has_seconds_first() -> None:
    times = schedule.preview(cron("*/15 * * * * *"), T0, T0, 3)
    assert times == [T0 + timedelta(seconds=s) for s in (15, 30, 45)]


def test_spring_forward_gap_fires_once_at_first_valid_instant() -> None:
    # Berlin skips 02:00-03:00 on 2026-03-29: 02:30 fires at 03:00 CEST (01:00 UTC).
    times = schedule.preview(cron("30 2 * * *", "Europe/Berlin"), T0,
                             datetime(2026, 3, 27, tzinfo=UTC), 4)
    assert times[2] == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert times[3] == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)


def test_fall_back_repeated_time_fires_once_the_first_time() -> None:
    # Berlin repeats 02:00-03:00 on 2026-10-25: 02:30 fires once, at 02:30 CEST (00:30 UTC).
    times = schedule.preview(cron("30 2 * * *", "Europe/Berlin"), T0,
                             datetime(2026, 10, 24, 12, tzinfo=UTC), 3)
    assert times == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
                     datetime(2026, 10, 26, 1, 30, tzinfo=UTC),
                     datetime(2026, 10, 27, 1, 30, tzinfo=UTC)]


def test_every_minute_through_a_gap_never_repeats_or_goes_backwards() -> None:
    times = schedule.preview(cron("* * * * *", "America/New_York"), T0,
                             datetime(2026, 3, 8, 6, 50, tzinfo=UTC), 30)
    assert times == sorted(set(times))
    # 01:59 EST is followed directly by 03:00 EDT.
    assert datetime(2026, 3, 8, 6, 59, tzinfo=UTC) in times
    assert datetime(2026, 3, 8, 7, 0, tzinfo=UTC) in times


def test_lord_howe_half_hour_shift() -> None:
    # Lord Howe moves 02:00 -> 02:30 on 2026-10-04; 02:15 does not exist that day.
    times = schedule.preview(cron("15 2 * * *", "Australia/Lord_Howe"), T0,
                             datetime(2026, 10, 2, tzinfo=UTC), 3)
    local = [t.astimezone(schedule.zone("Australia/Lord_Howe")) for t in times]
    assert [(t.day, t.hour, t.minute) for t in local] == [(3, 2, 15), (4, 2, 30), (5, 2, 15)]


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"])
def test_impossible_dates_are_rejected_quickly(expr: str) -> None:
    with pytest.raises(schedule.ScheduleError) as err:
        schedule.validate(cron(expr), T0)
    assert err.value.field == "schedule.expression"


@pytest.mark.parametrize("expr", ["", "* * *", "61 * * * *", "* * * * * * *", "a b c d e",
                                  "*/0 * * * *"])
def test_malformed_expressions_are_rejected(expr: str) -> None:
    with pytest.raises((schedule.ScheduleError, ValueError)):
        schedule.validate(cron(expr or "x"), T0)


def test_unknown_zone_is_rejected_naming_the_field() -> None:
    with pytest.raises(schedule.ScheduleError) as err:
        schedule.validate(cron("* * * * *", "Mars/Olympus"), T0)
    assert err.value.field == "schedule.timezone"


def test_schedule_that_ends_before_it_fires_is_rejected() -> None:
    s = cron("0 0 1 1 *", end_at=(T0 + timedelta(days=2)).isoformat())
    with pytest.raises(schedule.ScheduleError) as err:
        schedule.validate(s, T0 + timedelta(hours=1))
    assert err.value.field == "schedule.end_at"


def test_plan_window_catchup_policies() -> None:
    every = {"type": "interval", "every_seconds": 60}
    now = T0 + timedelta(minutes=10, seconds=30)
    horizon = now + timedelta(seconds=60)
    latest = schedule.plan_window(spec(every), T0, T0 + timedelta(minutes=1), horizon, now)
    assert latest.fire == [T0 + timedelta(minutes=10), T0 + timedelta(minutes=11)]
    assert len(latest.skipped) == 9
    assert latest.cursor == T0 + timedelta(minutes=12)
    all_ = schedule.plan_window(spec(every, catchup="all"), T0, T0 + timedelta(minutes=1),
                                horizon, now)
    assert len(all_.fire) == 11 and all_.skipped == []
    none = schedule.plan_window(spec(every, catchup="none"), T0, T0 + timedelta(minutes=1),
                                horizon, now)
    assert none.fire == [T0 + timedelta(minutes=11)] and len(none.skipped) == 10


def test_plan_window_one_shot_in_the_past_always_fires() -> None:
    s = spec({"type": "once", "at": T0.isoformat()}, catchup="none")
    w = schedule.plan_window(s, T0, T0, T0 + timedelta(days=1, seconds=10), T0 + timedelta(days=1))
    assert w.fire == [T0] and w.cursor is None
