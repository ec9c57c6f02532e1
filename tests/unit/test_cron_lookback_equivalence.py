"""next_fire without the unconditional look-back gives exactly what it gave with it.

Fixed-time expressions used to search from the wall day before `after`'s on every call, so a
firing moved out of a gap that crosses midnight onto `after`'s day was not missed; now that day
is searched only when an offset change lies near `after` (duetime/schedule.py, `_fixed_time`).
The oracle below is the algorithm as it was before that change, copied verbatim where it differs
and built from the same unchanged helpers elsewhere, so any output that moves fails here. The
inputs crowd round the offset changes of zones with whole-hour, half-hour, 45-minute, midnight
and whole-day changes, where the look-back could matter, with and without start_at and end_at.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from duetime import schedule
from duetime.schedule import Cron
from schemas.api import CronSchedule, JobSpec
from tests.unit.test_cron_properties import PROPERTY, expressions

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
         "Pacific/Chatham", "Pacific/Apia")
FIXED = ("0 2 * * *", "30 2 * * *", "15 2 * * *", "45 2 * * *", "0 0 * * *", "0 3 * * *",
         "30 23 * * *", "0 12 * * *", "59 1 * * *", "0 0 L * *", "0 2 * * SUN",
         "0 30 2 * * *", "59 59 1 * * *", "0 0 0 * * *", "30 45 2 * * *", "0 0 0 * * MON#1")
REAL = ("* * * * * *", "*/5 * * * * *", "*/10 * * * * *", "* * * * *", "0 * * * *",
        "0 2,3 * * *", "0 1-3 * * *", "*/15 2 * * *")
# Seconds from an offset change: exactly on it, within minutes of it, and about a day either side,
# where the wall day before `after`'s still holds a firing moved out of a gap.
NEAR = (0, 1, -1, 59, -60, 299, -300, 1799, 1800, -1800, 3600, -3600, 3 * 3600, -3 * 3600,
        86_399, 86_400, -86_400, -90_000, 100_000, 172_800, -172_800)


# ---- the oracle: the algorithm before the look-back was made conditional ----------------------

def old_fixed_time(c: Cron, tz: ZoneInfo, t: datetime, horizon: datetime) -> Iterator[datetime]:
    """Instants >= t of a fixed-time expression: one per matching day, gaps and repeats resolved."""
    # A firing moved forward out of a gap can land on the next day: start a day early.
    wall = schedule._naive(t, t.astimezone(tz).utcoffset() or timedelta(0)) - schedule._DAY
    until = schedule._naive(horizon, timedelta(days=1))
    while (found := schedule._next_wall(c, wall.replace(hour=0, minute=0, second=0), until)) is not None:
        instant = schedule._resolve_fixed(found, tz)
        if instant >= horizon:
            return
        if instant >= t:
            yield instant
        wall = found + schedule._DAY


def old_cron_instants(expression: str, timezone: str, after: datetime) -> Iterator[datetime]:
    c, tz = schedule.parse_cron(expression), schedule.zone(timezone)
    t = max(after.astimezone(UTC).replace(microsecond=0) + schedule._SECOND, schedule._EARLIEST)
    horizon = min(t + timedelta(days=366 * schedule._SEARCH_YEARS), schedule._LATEST)
    source = old_fixed_time if c.fixed_time else schedule._real_time
    yield from source(c, tz, t, horizon)


def old_next_fire(spec: JobSpec, after: datetime) -> datetime | None:
    """schedule.next_fire for a cron job, as instants_after computed it."""
    sched = spec.schedule
    assert isinstance(sched, CronSchedule)
    start = sched.start_at - timedelta(microseconds=1) if sched.start_at else after
    for instant in old_cron_instants(sched.expression, sched.timezone, max(after, start)):
        if sched.end_at is not None and instant > sched.end_at:
            return None
        return schedule._to_ms(instant)
    return None


# ---- inputs -------------------------------------------------------------------------------------

@cache
def changes(tz_name: str) -> tuple[datetime, ...]:
    """The zone's offset changes in 2026-27, and Apia's 2011 ones (it skipped 2011-12-30)."""
    tz = ZoneInfo(tz_name)
    years = (2011, 2026, 2027) if tz_name == "Pacific/Apia" else (2026, 2027)
    found = tuple(datetime.fromtimestamp(p, UTC) for y in years for p in schedule._transitions(tz, y))
    return found or (datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC))


def cron(expression: str, tz_name: str, start_at: datetime | None = None,
         end_at: datetime | None = None) -> JobSpec:
    sched: dict[str, object] = {"type": "cron", "expression": expression, "timezone": tz_name}
    if start_at is not None:
        sched["start_at"] = start_at.isoformat()
    if end_at is not None:
        sched["end_at"] = end_at.isoformat()
    return JobSpec.model_validate({"name": "t", "schedule": sched,
                                   "target": {"type": "http", "url": "http://x/y"}})


def grid() -> Iterator[tuple[JobSpec, datetime]]:
    for tz_name in ZONES:
        for change in changes(tz_name):
            for expression in (*FIXED, *REAL):
                plain = cron(expression, tz_name)
                # start_at on the change, end_at an hour after it: both bounds bite near the change
                bounded = cron(expression, tz_name, change, change + timedelta(hours=1))
                for seconds in NEAR:
                    after = change + timedelta(seconds=seconds)
                    yield plain, after
                    yield plain, after - timedelta(microseconds=1)
                    yield bounded, after


def same_as_before(spec: JobSpec, after: datetime) -> bool:
    return schedule.next_fire(spec, after, after) == old_next_fire(spec, after)


# ---- the checks ---------------------------------------------------------------------------------

def test_the_grid_round_offset_changes_gives_what_it_gave_before() -> None:
    cases = list(grid())
    assert len(cases) > 30_000  # 25 changes in 7 zones x 24 expressions x 21 distances x 3
    differing = [(s.schedule, a) for s, a in cases if not same_as_before(s, a)]
    assert differing == []


def test_a_firing_moved_out_of_a_skipped_day_is_still_found() -> None:
    # Apia skipped 2011-12-30: its noon fires at the first instant after the gap, 31 Dec 00:00.
    skip = datetime(2011, 12, 30, 10, tzinfo=UTC)
    fires = schedule.next_fire(cron("0 12 * * *", "Pacific/Apia"), skip, skip - timedelta(seconds=1))
    assert fires == skip == old_next_fire(cron("0 12 * * *", "Pacific/Apia"), skip - timedelta(seconds=1))


@st.composite
def chains(draw: st.DrawFn) -> tuple[JobSpec, datetime]:
    tz_name = draw(st.sampled_from(ZONES))
    change = draw(st.sampled_from(changes(tz_name)))
    after = change + timedelta(seconds=draw(st.integers(-50 * 3600, 50 * 3600)),
                               microseconds=draw(st.sampled_from((0, 0, 1, 999_999))))
    bound = st.none() | st.integers(-30 * 3600, 30 * 3600).map(lambda s: change + timedelta(seconds=s))
    start_at, end_at = draw(bound), draw(bound)
    if start_at is not None and end_at is not None and end_at <= start_at:
        start_at, end_at = end_at - timedelta(seconds=1), start_at  # the API refuses end_at <= start_at
    return cron(draw(expressions()), tz_name, start_at, end_at), after


@PROPERTY
@given(chains())
def test_random_expressions_fire_as_before_call_after_call(case: tuple[JobSpec, datetime]) -> None:
    # The writer asks again after every run: follow each answer for a few calls, like it does.
    spec, after = case
    for _ in range(4):
        expected = old_next_fire(spec, after)
        assert schedule.next_fire(spec, after, after) == expected
        if expected is None:
            return
        after = expected
