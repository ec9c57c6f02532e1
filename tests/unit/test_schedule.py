"""Schedule math, including DST in real zones and expressions that can never fire."""

from __future__ import annotations

import time
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


# ---- cron rules (docs/schedules.md); each of these was wrong with croniter 5.0.1 ----------------

def fires(expr: str, tz: str, after: datetime, count: int) -> list[datetime]:
    return schedule.preview(cron(expr, tz), T0, after, count)


def local(times: list[datetime], tz: str) -> list[str]:
    return [t.astimezone(schedule.zone(tz)).strftime("%m-%d %H:%M:%S%z") for t in times]


def test_a_one_value_range_fires_on_that_value_only() -> None:
    times = schedule.preview(cron("5-5 * * * *"), T0, T0, 3)
    assert times == [T0 + timedelta(hours=h, minutes=5) for h in range(3)]


def test_a_step_from_the_last_value_fires_on_that_value_only() -> None:
    times = schedule.preview(cron("59/10 * * * *"), T0, T0, 3)
    assert times == [T0 + timedelta(hours=h, minutes=59) for h in range(3)]


def test_a_day_step_includes_the_first_of_the_next_month() -> None:
    times = schedule.preview(cron("0 0 */10 * *"), T0, datetime(2026, 4, 25, tzinfo=UTC), 2)
    assert times == [datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)]


def test_nth_weekday_with_a_day_of_month_is_valid_and_either_day_fires() -> None:
    schedule.validate(cron("0 0 1 * FRI#2"), T0)
    times = schedule.preview(cron("0 0 1 * FRI#2"), T0, T0, 4)
    assert [t.day for t in times] == [9, 1, 13, 1]  # 2nd Friday of January, 1 Feb, 2nd Friday...


def test_nth_weekday_keeps_the_day_of_month() -> None:
    times = schedule.preview(cron("0 0 1-7 * FRI#1"), T0, T0 - timedelta(seconds=1), 8)
    assert [(t.month, t.day) for t in times] == [(1, d) for d in range(1, 8)] + [(2, 1)]


def test_six_field_day_of_week_seven_is_sunday() -> None:
    times = schedule.preview(cron("0 0 12 * * 7"), T0, T0, 2)
    assert times == [datetime(2026, 1, 4, 12, tzinfo=UTC), datetime(2026, 1, 11, 12, tzinfo=UTC)]
    assert times == schedule.preview(cron("0 0 12 * * SUN"), T0, T0, 2)


def test_day_fields_are_anded_when_either_starts_with_a_star_and_ored_otherwise() -> None:
    odd_mondays = schedule.preview(cron("0 0 */2 * MON"), T0, T0, 3)
    assert [t.day for t in odd_mondays] == [5, 19, 9]  # odd-dated Mondays only
    either = schedule.preview(cron("0 0 1,15 * MON"), T0, T0, 4)
    assert [(t.month, t.day) for t in either] == [(1, 5), (1, 12), (1, 15), (1, 19)]


def test_more_syntax_names_macros_last_and_wrapping_ranges() -> None:
    def days(expr: str, n: int = 3) -> list[tuple[int, int]]:
        return [(t.month, t.day) for t in schedule.preview(cron(expr), T0, T0, n)]

    assert days("0 0 LW * *") == [(1, 30), (2, 27), (3, 31)]  # last weekday of the month
    assert days("0 0 * * 5L") == days("0 0 * * L5") == [(1, 30), (2, 27), (3, 27)]  # last Friday
    assert days("0 0 ? * fri-mon", 4) == [(1, 2), (1, 3), (1, 4), (1, 5)]  # wraps round Sunday
    assert days("@daily") == days("0 0 * * *") == [(1, 2), (1, 3), (1, 4)]
    assert days("0 0 1 jan-mar,DEC *", 4) == [(2, 1), (3, 1), (12, 1), (1, 1)]


@pytest.mark.parametrize("expr", ["0 0 * * 5#6", "0 0 * * 5#0", "0 0 15W * *", "0 0 L-2 * *",
                                  "H * * * *", "0 0 * * 8", "0 0 0 * *", "1,,2 * * * *",
                                  "*/x * * * *", "@reboot", "0 0 * * 1 2027", "0 0 L/2 * *"])
def test_unsupported_syntax_is_rejected_naming_the_field(expr: str) -> None:
    with pytest.raises(schedule.ScheduleError) as err:
        schedule.validate(cron(expr), T0)
    assert err.value.field == "schedule.expression"


@pytest.mark.parametrize(("expr", "tz"), [("0 0 30 2 *", "Europe/Berlin"), ("* * 31 4 *", "Europe/Berlin"),
                                          ("0 0 */31 * MON#5", "America/New_York"),
                                          ("*/5 * 30 2 *", "Australia/Lord_Howe")])
def test_impossible_expressions_end_their_search_quickly(expr: str, tz: str) -> None:
    began = time.perf_counter()
    assert schedule.preview(cron(expr, tz), T0, T0, 1) == []
    assert time.perf_counter() - began < 1.0


def test_a_rare_expression_is_found_decades_ahead() -> None:
    # 29 February on a Monday: 2044, 18 years after T0.
    assert schedule.preview(cron("0 0 * 2 MON#5"), T0, T0, 1) == [datetime(2044, 2, 29, tzinfo=UTC)]


# ---- DST: fixed-time expressions on the wall clock, every other one on real time ---------------

def test_every_ten_seconds_keeps_firing_through_the_repeated_hour() -> None:
    # Berlin repeats 02:00-03:00 on 2026-10-25 (00:00-02:00 UTC): 720 firings, 10 s apart.
    start = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)
    times = schedule.preview(cron("*/10 * * * * *", "Europe/Berlin"), T0, start - timedelta(seconds=1), 720)
    assert times == [start + timedelta(seconds=10 * i) for i in range(720)]


def test_hourly_job_fires_every_real_hour_through_both_dst_changes() -> None:
    spring = fires("0 * * * *", "Europe/Berlin", datetime(2026, 3, 28, 23, 30, tzinfo=UTC), 3)
    assert local(spring, "Europe/Berlin") == ["03-29 01:00:00+0100", "03-29 03:00:00+0200",
                                              "03-29 04:00:00+0200"]  # no extra firing for 02:00
    assert spring == [datetime(2026, 3, 29, h, tzinfo=UTC) for h in (0, 1, 2)]
    fall = fires("0 * * * *", "Europe/Berlin", datetime(2026, 10, 24, 23, 30, tzinfo=UTC), 3)
    assert local(fall, "Europe/Berlin") == ["10-25 02:00:00+0200", "10-25 02:00:00+0100",
                                            "10-25 03:00:00+0100"]


def test_a_list_in_the_hour_field_runs_on_real_time() -> None:
    # Not a fixed time: 02:00 does not exist on 2026-03-29 and is not moved; 02:00 twice in October.
    spring = fires("0 2,3 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert local(spring, "Europe/Berlin") == ["03-29 03:00:00+0200", "03-30 02:00:00+0200"]
    fall = fires("0 2,3 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC), 3)
    assert local(fall, "Europe/Berlin") == ["10-25 02:00:00+0200", "10-25 02:00:00+0100",
                                            "10-25 03:00:00+0100"]


def test_six_field_fixed_time_fires_once_in_a_gap_and_once_in_a_repeat() -> None:
    tz = "Europe/Berlin"
    gap = fires("15 30 2 * * *", tz, datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert local(gap, tz) == ["03-29 03:00:00+0200", "03-30 02:30:15+0200"]
    repeat = fires("15 30 2 * * *", tz, datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert local(repeat, tz) == ["10-25 02:30:15+0200", "10-26 02:30:15+0100"]


def test_a_fixed_time_inside_a_repeat_that_began_before_the_start_does_not_fire_again() -> None:
    # 02:30 CEST (00:30 UTC) already happened; 02:30 CET (01:30 UTC) is its repeat.
    times = fires("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 25, 1, tzinfo=UTC), 1)
    assert times == [datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


def test_midnight_that_does_not_exist_fires_at_the_end_of_the_gap() -> None:
    # Santiago skips 00:00-01:00 on 2026-09-06: the midnight job fires at 01:00 -03.
    times = fires("0 0 * * *", "America/Santiago", datetime(2026, 9, 5, 12, tzinfo=UTC), 2)
    assert local(times, "America/Santiago") == ["09-06 01:00:00-0300", "09-07 00:00:00-0300"]
