"""Schedule math: when a job fires. Pure functions, no I/O.

Cron expressions are parsed and evaluated here, by the rules written in docs/schedules.md
(ADR 0006 says why duetime does not delegate this to a cron library):

- day-of-month and day-of-week: Vixie cron's rule, AND when either field starts with `*` (or `?`),
  OR otherwise;
- fixed-time expressions (seconds, minutes and hours each select one value) run on the wall clock
  of the job's time zone: a time that does not exist (spring forward) fires once at the first
  instant after the gap, one that exists twice (fall back) fires once, the first time;
- every other expression runs on real time: it fires at each instant whose wall-clock reading
  matches, so it keeps its rhythm through both passes of a repeated hour and gains nothing from
  a gap.

Every search is bounded (an expression must fire within `_SEARCH_YEARS`), so impossible
expressions are rejected instead of looping.
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.api import (
    CronSchedule,
    DelaySchedule,
    IntervalSchedule,
    JobSpec,
    NowSchedule,
    OnceSchedule,
)

# Any expression must match at least once within this many years: 28 is the weekday cycle of the
# calendar, so e.g. `0 0 * 2 MON#5` (29 February on a Monday) is found wherever it starts.
_SEARCH_YEARS = 28
# Cron instants are searched inside this range; outside it they would overflow `datetime`.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(9990, 1, 1, tzinfo=UTC)
# Transitions are found by sampling the UTC offset this often; no zone changes its offset twice
# within 6 hours in the time-zone database.
_TRANSITION_SAMPLE_SECONDS = 6 * 3600
_SECOND = timedelta(seconds=1)
_DAY = timedelta(days=1)
# A fixed-time firing of the wall day before t's that is not yet past lies less than the size of
# an offset change after t; no zone's offset has changed by more than 26 hours (UTC-12 to UTC+14).
_FIXED_REACH = timedelta(days=2)


class ScheduleError(ValueError):
    """A schedule that is malformed or can never fire; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError("schedule.timezone", f"unknown time zone {name!r}") from exc


# ---- parsing ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Field:
    name: str
    lo: int
    hi: int
    names: Mapping[str, int]
    any_ok: tuple[str, ...] = ("*",)


_NO_NAMES: Mapping[str, int] = {}
_MONTH_NAMES = {n: i for i, n in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP",
                                            "OCT", "NOV", "DEC"), 1)}
_DAY_NAMES = {n: i for i, n in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_SECONDS = _Field("second", 0, 59, _NO_NAMES)
_MINUTES = _Field("minute", 0, 59, _NO_NAMES)
_HOURS = _Field("hour", 0, 23, _NO_NAMES)
_DOM = _Field("day-of-month", 1, 31, _NO_NAMES, ("*", "?"))
_MONTHS = _Field("month", 1, 12, _MONTH_NAMES)
_DOW = _Field("day-of-week", 0, 7, _DAY_NAMES, ("*", "?"))  # 0 and 7 are both Sunday
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: the values each field selects (weekdays 0-6, Sunday 0)."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    last_day: bool  # `L`
    last_weekday_of_month: bool  # `LW`
    months: frozenset[int]
    weekdays: frozenset[int]
    nth_weekdays: frozenset[tuple[int, int]]  # `FRI#2` -> (5, 2)
    last_weekdays: frozenset[int]  # `5L` -> 5
    days_and: bool  # Vixie: AND when either day field starts with `*`, else OR
    fixed_time: bool  # seconds, minutes and hours each select exactly one value


def _bad(field: _Field, item: str, why: str = "") -> ScheduleError:
    detail = f": {why}" if why else ""
    return ScheduleError("schedule.expression",
                         f"invalid cron expression: bad {field.name} {item!r}{detail}")


def _value(text: str, field: _Field) -> int:
    upper = text.upper()
    if upper in field.names:
        return field.names[upper]
    if not (text.isascii() and text.isdigit()):
        raise _bad(field, text)
    value = int(text)
    if not field.lo <= value <= field.hi:
        raise _bad(field, text, f"out of range {field.lo}-{field.hi}")
    return value


def _expand(item: str, field: _Field) -> list[int]:
    """`*`, `a`, `a-b` (wrapping round if a > b), each optionally `/step`; `a/step` runs to the top."""
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not (step_text.isascii() and step_text.isdigit()) or int(step_text) < 1:
            raise _bad(field, item, "the step must be a whole number of at least 1")
        step = int(step_text)
    if base in field.any_ok:
        lo, hi = field.lo, field.hi
    elif "-" in base:
        first, _, last = base.partition("-")
        lo, hi = _value(first, field), _value(last, field)
    else:
        lo = _value(base, field)
        hi = field.hi if slash else lo
    if lo <= hi:
        return list(range(lo, hi + 1))[::step]
    return [*range(lo, field.hi + 1), *range(field.lo, hi + 1)][::step]


def _items(text: str, field: _Field) -> list[str]:
    items = text.split(",")
    if any(not item for item in items):
        raise _bad(field, text, "empty list item")
    return items


def _plain(text: str, field: _Field) -> tuple[int, ...]:
    return tuple(sorted({v for item in _items(text, field) for v in _expand(item, field)}))


def _parse_dom(text: str) -> tuple[frozenset[int], bool, bool]:
    days: set[int] = set()
    last = last_weekday = False
    for item in _items(text, _DOM):
        if item.upper() == "L":
            last = True
        elif item.upper() == "LW":
            last_weekday = True
        else:
            days.update(_expand(item, _DOM))
    return frozenset(days), last, last_weekday


def _parse_dow(text: str) -> tuple[frozenset[int], frozenset[tuple[int, int]], frozenset[int]]:
    plain: set[int] = set()
    nth: set[tuple[int, int]] = set()
    last: set[int] = set()
    for item in _items(text, _DOW):
        upper = item.upper()
        if "#" in upper:
            day, _, n = upper.partition("#")
            if n not in ("1", "2", "3", "4", "5"):
                raise _bad(_DOW, item, "the occurrence after # must be 1-5")
            nth.add((_value(day, _DOW) % 7, int(n)))
        elif len(upper) > 1 and upper.endswith("L"):
            last.add(_value(upper[:-1], _DOW) % 7)
        elif len(upper) > 1 and upper.startswith("L"):  # croniter's spelling of `5L`
            last.add(_value(upper[1:], _DOW) % 7)
        else:
            plain.update(v % 7 for v in _expand(item, _DOW))
    return frozenset(plain), frozenset(nth), frozenset(last)


@lru_cache(maxsize=4096)
def parse_cron(expression: str) -> Cron:
    """Parse a 5-field (minute first) or 6-field (second first) expression, or a macro."""
    fields = _MACROS.get(expression.strip().lower(), expression).split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ScheduleError("schedule.expression", "a cron expression has 5 fields, or 6 with seconds first")
    second, minute, hour, dom, month, dow = fields
    seconds, minutes, hours = _plain(second, _SECONDS), _plain(minute, _MINUTES), _plain(hour, _HOURS)
    days, last_day, last_weekday = _parse_dom(dom)
    weekdays, nth, last = _parse_dow(dow)
    return Cron(
        seconds=seconds, minutes=minutes, hours=hours,
        days=days, last_day=last_day, last_weekday_of_month=last_weekday,
        months=frozenset(_plain(month, _MONTHS)),
        weekdays=weekdays, nth_weekdays=nth, last_weekdays=last,
        days_and=dom.startswith(_DOM.any_ok) or dow.startswith(_DOW.any_ok),
        fixed_time=len(seconds) == len(minutes) == len(hours) == 1,
    )


# ---- matching on the wall clock -----------------------------------------------------------------

def _last_weekday_of_month(year: int, month: int) -> int:
    length = calendar.monthrange(year, month)[1]
    weekday = date(year, month, length).weekday()  # Monday 0
    return length - max(0, weekday - 4)


def _dom_matches(c: Cron, d: date) -> bool:
    if d.day in c.days:
        return True
    if c.last_day and d.day == calendar.monthrange(d.year, d.month)[1]:
        return True
    return c.last_weekday_of_month and d.day == _last_weekday_of_month(d.year, d.month)


def _dow_matches(c: Cron, d: date) -> bool:
    weekday = d.isoweekday() % 7  # Sunday 0
    if weekday in c.weekdays or (weekday, (d.day - 1) // 7 + 1) in c.nth_weekdays:
        return True
    return weekday in c.last_weekdays and d.day + 7 > calendar.monthrange(d.year, d.month)[1]


def _day_matches(c: Cron, d: date) -> bool:
    if c.days_and:
        return _dom_matches(c, d) and _dow_matches(c, d)
    return _dom_matches(c, d) or _dow_matches(c, d)


def _time_on_or_after(c: Cron, h: int, m: int, s: int) -> tuple[int, int, int] | None:
    """The first time of day >= h:m:s that the expression selects."""
    for hour in c.hours[bisect_left(c.hours, h):]:
        if hour > h:
            return hour, c.minutes[0], c.seconds[0]
        for minute in c.minutes[bisect_left(c.minutes, m):]:
            if minute > m:
                return hour, minute, c.seconds[0]
            i = bisect_left(c.seconds, s)
            if i < len(c.seconds):
                return hour, minute, c.seconds[i]
    return None


def _next_wall(c: Cron, start: datetime, until: datetime) -> datetime | None:
    """The first naive wall-clock time in [start, until) that the expression matches."""
    day, hms = start.date(), (start.hour, start.minute, start.second)
    while day < until.date() or (day == until.date() and until.time() > time()):
        if day.month not in c.months:
            day = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
            hms = (0, 0, 0)
            continue
        found = _time_on_or_after(c, *hms) if _day_matches(c, day) else None
        if found is not None:
            wall = datetime.combine(day, time(*found))
            return wall if wall < until else None
        day, hms = day + _DAY, (0, 0, 0)
    return None


# ---- from wall clock to instants ----------------------------------------------------------------

def _offset_at(tz: ZoneInfo, posix: int) -> timedelta | None:
    return datetime.fromtimestamp(posix, tz).utcoffset()


@lru_cache(maxsize=8192)
def _transitions(tz: ZoneInfo, year: int) -> tuple[int, ...]:
    """POSIX seconds in (1 Jan `year`, 1 Jan `year`+1] (UTC) at which `tz` changes its offset."""
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    found: list[int] = []
    prev, prev_offset = start, _offset_at(tz, start)
    for sample in [*range(start + _TRANSITION_SAMPLE_SECONDS, end, _TRANSITION_SAMPLE_SECONDS), end]:
        offset = _offset_at(tz, sample)
        if offset != prev_offset:
            lo, hi = prev, sample  # offset(lo) is the old one, offset(hi) the new one
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if _offset_at(tz, mid) == prev_offset else (lo, mid)
            found.append(hi)
        prev, prev_offset = sample, offset
    return tuple(found)


def _next_transition(tz: ZoneInfo, after: datetime, before: datetime) -> datetime | None:
    """The first instant in (after, before) at which `tz` changes its UTC offset."""
    posix = after.timestamp()
    for year in range(after.year, before.year + 1):
        for transition in _transitions(tz, year):
            if transition > posix:
                instant = datetime.fromtimestamp(transition, UTC)
                return instant if instant < before else None
    return None


def _naive(instant: datetime, offset: timedelta) -> datetime:
    return (instant + offset).replace(tzinfo=None)


def _real_time(c: Cron, tz: ZoneInfo, t: datetime, horizon: datetime) -> Iterator[datetime]:
    """Instants >= t whose wall-clock reading in `tz` matches, in order (non-fixed expressions)."""
    while t < horizon:
        offset = t.astimezone(tz).utcoffset() or timedelta(0)
        # The offset is constant until period_end; looking a year ahead at most keeps the
        # transition search (and its cache) small for zones that have none.
        lookahead = min(horizon, t + timedelta(days=366))
        period_end = _next_transition(tz, t, lookahead) or lookahead
        wall_end = _naive(period_end, offset)
        wall = _next_wall(c, _naive(t, offset), wall_end)
        while wall is not None:
            instant = (wall - offset).replace(tzinfo=UTC)
            yield instant
            wall = _next_wall(c, wall + _SECOND, wall_end)
        t = period_end


def _resolve_fixed(wall: datetime, tz: ZoneInfo) -> datetime:
    """A fixed wall-clock time as an instant: the first reading, or the end of the gap it falls in."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _naive(first, first.astimezone(tz).utcoffset() or timedelta(0)) == wall:
        return first
    before_gap = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)  # read with the later offset
    return _next_transition(tz, before_gap, first + _SECOND) or first


def _fixed_time(c: Cron, tz: ZoneInfo, t: datetime, horizon: datetime) -> Iterator[datetime]:
    """Instants >= t of a fixed-time expression: one per matching day, gaps and repeats resolved."""
    wall = _naive(t, t.astimezone(tz).utcoffset() or timedelta(0))
    # A firing moved forward out of a gap that crosses midnight (Apia skipped all of 2011-12-30)
    # lands on a later wall day, so the day before t's can still fire at or after t. It then
    # fires at an offset change at or after t, or at a reading earlier than t's that only an
    # offset change after t can put later; either way a change lies within _FIXED_REACH of t.
    # Without one that day's firing is already past, and searching it would double the cost.
    if _next_transition(tz, t - _SECOND, t + _FIXED_REACH) is not None:
        wall -= _DAY
    until = _naive(horizon, timedelta(days=1))
    while (found := _next_wall(c, wall.replace(hour=0, minute=0, second=0), until)) is not None:
        instant = _resolve_fixed(found, tz)
        if instant >= horizon:
            return
        if instant >= t:
            yield instant
        wall = found + _DAY


def cron_instants(expression: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """Instants strictly after `after` (aware) at which the expression fires, in order."""
    c, tz = parse_cron(expression), zone(timezone)
    t = max(after.astimezone(UTC).replace(microsecond=0) + _SECOND, _EARLIEST)
    horizon = min(t + timedelta(days=366 * _SEARCH_YEARS), _LATEST)
    source = _fixed_time if c.fixed_time else _real_time
    yield from source(c, tz, t, horizon)


def _cron_instants(spec: CronSchedule, after: datetime) -> Iterator[datetime]:
    return cron_instants(spec.expression, spec.timezone, after)


def validate(spec: JobSpec, created_at: datetime) -> None:
    """Raise ScheduleError if the schedule is malformed or can never fire."""
    schedule = spec.schedule
    if isinstance(schedule, CronSchedule):
        zone(schedule.timezone)
        start = max(created_at, schedule.start_at or created_at)
        first = next(_cron_instants(schedule, start - timedelta(microseconds=1)), None)
        if first is None:
            raise ScheduleError("schedule.expression", "this cron expression never fires")
        if schedule.end_at is not None and first > schedule.end_at:
            raise ScheduleError("schedule.end_at", "the schedule never fires before end_at")
    elif isinstance(schedule, IntervalSchedule) and schedule.end_at is not None:
        first = next_fire(spec, created_at, created_at - timedelta(microseconds=1))
        if first is None:
            raise ScheduleError("schedule.end_at", "the schedule never fires before end_at")


def _to_ms(instant: datetime) -> datetime:
    """Fire times have millisecond precision, like the run ids derived from them."""
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


def one_shot_at(spec: JobSpec, created_at: datetime) -> datetime | None:
    schedule = spec.schedule
    if isinstance(schedule, OnceSchedule):
        return _to_ms(schedule.at.astimezone(UTC))
    if isinstance(schedule, DelaySchedule):
        return _to_ms(created_at + timedelta(seconds=schedule.seconds))
    if isinstance(schedule, NowSchedule):
        return _to_ms(created_at)
    return None


def _interval_instants(spec: IntervalSchedule, created_at: datetime, after: datetime) -> Iterator[datetime]:
    step = timedelta(seconds=spec.every_seconds)
    anchor = _to_ms(spec.start_at.astimezone(UTC) if spec.start_at else created_at + step)
    k = 0 if after < anchor else int((after - anchor) / step) + 1
    while True:
        instant = anchor + k * step
        if instant > after:
            yield instant
        k += 1


def instants_after(spec: JobSpec, created_at: datetime, after: datetime) -> Iterator[datetime]:
    """Every fire time strictly after `after`, in order, honouring start_at and end_at."""
    schedule = spec.schedule
    if spec.one_shot:
        at = one_shot_at(spec, created_at)
        if at is not None and at > after:
            yield at
        return
    if isinstance(schedule, IntervalSchedule):
        source = _interval_instants(schedule, created_at, after)
    elif isinstance(schedule, CronSchedule):
        start = schedule.start_at - timedelta(microseconds=1) if schedule.start_at else after
        source = _cron_instants(schedule, max(after, start))
    else:  # pragma: no cover - the discriminated union is exhaustive
        return
    end = getattr(schedule, "end_at", None)
    for instant in source:
        if end is not None and instant > end:
            return
        yield _to_ms(instant)


def next_fire(spec: JobSpec, created_at: datetime, after: datetime) -> datetime | None:
    return next(instants_after(spec, created_at, after), None)


def first_fire(spec: JobSpec, created_at: datetime) -> datetime | None:
    if spec.one_shot:
        return one_shot_at(spec, created_at)
    return next_fire(spec, created_at, created_at - timedelta(microseconds=1))


def preview(spec: JobSpec, created_at: datetime, after: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    for instant in instants_after(spec, created_at, after):
        out.append(instant)
        if len(out) >= count:
            break
    return out


@dataclass(frozen=True)
class Window:
    """What a loader puts into the due-set for one job, and where it continues next time."""

    fire: list[datetime]
    skipped: list[datetime]
    cursor: datetime | None


def plan_window(
    spec: JobSpec,
    created_at: datetime,
    cursor: datetime,
    horizon: datetime,
    now: datetime,
    limit: int = 1000,
) -> Window:
    """Occurrences from `cursor` (inclusive) to `horizon` (exclusive), with catch-up applied.

    Occurrences already in the past were missed while nothing was loading them: one-shot jobs
    fire anyway; recurring ones follow the job's catch-up policy, and every occurrence not fired
    is returned as skipped so it can be recorded.
    """
    due: list[datetime] = []
    nxt: datetime | None = None
    for instant in instants_after(spec, created_at, cursor - timedelta(microseconds=1)):
        if instant >= horizon or len(due) >= limit:
            nxt = instant
            break
        due.append(instant)
    if spec.one_shot:
        return Window(fire=due, skipped=[], cursor=nxt)
    missed = [t for t in due if t < now]
    future = [t for t in due if t >= now]
    if len(missed) <= 1 and spec.catchup != "none":
        return Window(fire=due, skipped=[], cursor=nxt)
    keep: list[datetime]
    if spec.catchup == "latest":
        keep = missed[-1:]
    elif spec.catchup == "all":
        oldest = now - timedelta(seconds=spec.catchup_window_seconds)
        keep = [t for t in missed if t >= oldest][-100:]
    else:
        keep = []
    skipped = [t for t in missed if t not in keep]
    return Window(fire=keep + future, skipped=skipped, cursor=nxt)
