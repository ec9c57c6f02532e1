"""Cron semantics, checked against two independent implementations.

1. A brute-force reference of the rules in docs/schedules.md: it reads the wall clock of every
   minute (and the seconds the expression selects) in a bounded window and decides with the
   documented rules alone, so the search, the transition finder and the DST rules of
   duetime.schedule are checked by code that shares none of them.
2. cronsim (another cron library), wherever its rules and ours coincide: always in zones without
   DST, and around transitions when both treat the expression the same way (cronsim applies the
   fixed-time rule to 5-field expressions whose minute and hour fields do not start with `*`;
   duetime to expressions whose seconds, minutes and hours each select one value).

Starts lie near the 2026-27 DST changes of zones with whole-hour, half-hour, 45-minute and
midnight transitions. The runs are derandomized, so CI sees the same examples every time.
"""

from __future__ import annotations

import calendar
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import islice, takewhile
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duetime import schedule

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
         "America/Santiago", "Pacific/Chatham")
WINDOW = timedelta(hours=26)
MAX_FIRINGS = 400
# DUETIME_CRON_EXAMPLES=5000 DUETIME_CRON_RANDOM=1 runs a longer, randomized search locally.
PROPERTY = settings(max_examples=int(os.environ.get("DUETIME_CRON_EXAMPLES", "200")),
                    derandomize=not os.environ.get("DUETIME_CRON_RANDOM"), database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
# cronsim loses its way around transitions that are not on a whole UTC hour (Lord Howe's half-hour
# shift, Chatham's +12:45/+13:45): e.g. `* 0 * * *` from 2026-04-05 01:50 Lord Howe answers 00:30
# the next day, `0 0,44 3 * * *` from Chatham's 2026-04-05 fall-back repeats 03:00+13:45 forever.
# Near transitions it is compared only in these zones; the brute-force reference covers the rest.
CRONSIM_DST_ZONES = ("Europe/Berlin", "America/New_York", "America/Santiago")

# ---- independent helpers ---------------------------------------------------------------------


@cache
def transitions(tz_name: str) -> tuple[datetime, ...]:
    """Offset changes in 2026-27: a daily reading of the offset, then minute by minute that day."""
    tz, out = ZoneInfo(tz_name), []
    day = datetime(2026, 1, 1, tzinfo=UTC)
    while day < datetime(2028, 1, 1, tzinfo=UTC):
        if day.astimezone(tz).utcoffset() != (day + timedelta(days=1)).astimezone(tz).utcoffset():
            t = day
            while t.astimezone(tz).utcoffset() == day.astimezone(tz).utcoffset():
                t += timedelta(minutes=1)
            out.append(t)
        day += timedelta(days=1)
    return tuple(out)


def crosses_transition(tz_name: str, start: datetime, end: datetime) -> bool:
    return any(start - timedelta(hours=3) <= t <= end + timedelta(hours=3) for t in transitions(tz_name))


def day_ok(c: schedule.Cron, d: date) -> bool:
    length = calendar.monthrange(d.year, d.month)[1]
    last_weekday = max(x for x in range(length - 2, length + 1) if date(d.year, d.month, x).weekday() < 5)
    dom = d.day in c.days or (c.last_day and d.day == length) or (
        c.last_weekday_of_month and d.day == last_weekday)
    sunday0 = (d.weekday() + 1) % 7
    dow = sunday0 in c.weekdays or (sunday0, (d.day + 6) // 7) in c.nth_weekdays or (
        sunday0 in c.last_weekdays and d.day > length - 7)
    both_matter = c.days_and
    return d.month in c.months and ((dom and dow) if both_matter else (dom or dow))


def minutes(start: datetime, end: datetime) -> Iterator[datetime]:
    m = start.replace(second=0, microsecond=0)
    while m < end:
        yield m
        m += timedelta(minutes=1)


def reference(expression: str, tz_name: str, start: datetime, end: datetime) -> list[datetime]:
    """Firings in (start, end) by the documented rules, found by reading every minute's wall clock."""
    c, tz = schedule.parse_cron(expression), ZoneInfo(tz_name)
    matches = cache(lambda d: day_ok(c, d))
    out: list[datetime] = []
    if not c.fixed_time:  # real time: every instant whose wall-clock reading matches
        for m in minutes(start, end):
            wall = m.astimezone(tz)
            if matches(wall.date()) and wall.hour in c.hours and wall.minute in c.minutes:
                out += [m + timedelta(seconds=s) for s in c.seconds]
        return [t for t in out if start < t < end]
    # Fixed time: for each matching local date D, the first instant whose wall reading is at or
    # after D's fixed time (the exact time, or the end of the gap that swallowed it).
    fired: set[date] = set()
    at = (c.hours[0], c.minutes[0], c.seconds[0])
    for m in minutes(start - timedelta(hours=3), end):  # lead-in covers a repeated hour
        for candidate in sorted({m, m + timedelta(seconds=at[2])}):
            wall = candidate.astimezone(tz).replace(tzinfo=None)
            for d in (wall.date(), wall.date() - timedelta(days=1)):
                if d not in fired and matches(d) and wall >= datetime(d.year, d.month, d.day, *at):
                    fired.add(d)
                    out.append(candidate)
    return [t for t in out if start < t < end]


def duetime_firings(expression: str, tz_name: str, start: datetime, end: datetime) -> list[datetime]:
    firings = schedule.cron_instants(expression, tz_name, start)
    return list(islice(takewhile(lambda t: t < end, firings), MAX_FIRINGS))


def cronsim_firings(expression: str, tz_name: str, start: datetime, end: datetime,
                    limit: int = MAX_FIRINGS) -> list[datetime]:
    try:
        it = CronSim(expression, start.astimezone(ZoneInfo(tz_name)))
    except CronSimError:  # cronsim's "can never fire" check
        return []
    # In a repeated hour cronsim's fixed-time mode can answer the first reading of a time that
    # precedes `start` (its search runs on the naive wall clock): not a firing after `start`.
    firings = (t.astimezone(UTC) for t in it)
    return [t for t in islice(takewhile(lambda t: t < end, firings), limit) if t > start]


def cronsim_uses_fixed_time(expression: str) -> bool:
    fields = expression.split()
    return len(fields) == 5 and not fields[0].startswith("*") and not fields[1].startswith("*")


# ---- strategies --------------------------------------------------------------------------------


def field(lo: int, hi: int, names: tuple[str, ...] = (),
          common: tuple[str, ...] = ("*",)) -> st.SearchStrategy[str]:
    number = st.integers(lo, hi)
    value = number.map(str) | (st.sampled_from(names) if names else number.map(str))
    span = st.tuples(number, number).map(sorted).map(lambda ab: f"{ab[0]}-{ab[1]}")
    step = st.integers(1, hi - lo + 1).map(str)
    item = st.one_of(
        value, span,
        st.tuples(st.just("*"), step).map("/".join),
        st.tuples(number.map(str), step).map("/".join),
        # a stepped range spans two values at least: cronsim reads `a-a/n` as `a/n` (a to the top)
        st.tuples(st.tuples(number, number).filter(lambda ab: ab[0] != ab[1]).map(sorted)
                  .map(lambda ab: f"{ab[0]}-{ab[1]}"), step).map("/".join),
    )
    listed = st.lists(item, min_size=1, max_size=3).map(",".join)
    return st.sampled_from(common) | listed


SECONDS = field(0, 59, common=("0", "*/10", "30", "*"))
MINUTES = field(0, 59, common=("0", "30", "15", "45", "*", "*/15"))
HOURS = field(0, 23, common=("0", "1", "2", "3", "23", "*", "*/2"))
DOM = field(1, 31, common=("*", "*", "L", "LW", "*/2", "1-7"))
MONTHS = field(1, 12, ("JAN", "MAR", "APR", "SEP", "OCT", "NOV", "DEC"), common=("*", "*", "*"))
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
NTH = st.tuples(st.sampled_from(DAY_NAMES) | st.integers(0, 7).map(str), st.sampled_from(("#1", "#2", "#5")))
LAST = st.integers(0, 7).map(lambda d: f"{d}L")  # cronsim spells the weekday as a number here
DOW = field(0, 7, DAY_NAMES, common=("*", "*", "MON-FRI", "0", "7")) | NTH.map("".join) | LAST


@st.composite
def expressions(draw: st.DrawFn) -> str:
    five = [draw(MINUTES), draw(HOURS), draw(DOM), draw(MONTHS), draw(DOW)]
    return " ".join([draw(SECONDS), *five] if draw(st.booleans()) else five)


@st.composite
def starts(draw: st.DrawFn, tz_name: str) -> datetime:
    """An instant within a day before to a few hours after one of the zone's 2026-27 transitions."""
    anchors = transitions(tz_name) or (datetime(2026, 3, 29, 1, tzinfo=UTC),
                                       datetime(2027, 10, 31, 1, tzinfo=UTC))
    anchor = draw(st.sampled_from(anchors))
    return anchor + timedelta(seconds=draw(st.integers(-26 * 3600, 3 * 3600)),
                              microseconds=draw(st.sampled_from((0, 0, 1, 999_999))))


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, datetime]:
    tz_name = draw(st.sampled_from(ZONES))
    return draw(expressions()), tz_name, draw(starts(tz_name))


# ---- properties --------------------------------------------------------------------------------


@PROPERTY
@given(cases())
def test_matches_the_brute_force_reference_of_the_documented_rules(case: tuple[str, str, datetime]) -> None:
    expression, tz_name, start = case
    end = start + WINDOW
    expected = reference(expression, tz_name, start, end)[:MAX_FIRINGS]
    assert duetime_firings(expression, tz_name, start, end) == expected


@PROPERTY
@given(cases())
def test_matches_cronsim_where_the_rules_coincide(case: tuple[str, str, datetime]) -> None:
    expression, tz_name, start = case
    end = start + WINDOW
    same_rule = cronsim_uses_fixed_time(expression) == schedule.parse_cron(expression).fixed_time
    if crosses_transition(tz_name, start, end) and (not same_rule or tz_name not in CRONSIM_DST_ZONES):
        return  # the documented difference (docs/schedules.md), or a cronsim bug (see above)
    expected = cronsim_firings(expression, tz_name, start, end)
    assert duetime_firings(expression, tz_name, start, end) == expected


@PROPERTY
@given(expressions(), st.sampled_from(("UTC", "Asia/Kolkata")),
       st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31)))
def test_matches_cronsim_over_years_in_zones_without_dst(expression: str, tz_name: str,
                                                         start: datetime) -> None:
    aware = start.replace(tzinfo=UTC)
    end = aware + timedelta(days=366 * 10)
    ours = [t for t in islice(schedule.cron_instants(expression, tz_name, aware), 25) if t < end]
    assert ours == cronsim_firings(expression, tz_name, aware, end, limit=25)
