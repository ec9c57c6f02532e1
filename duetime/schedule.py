"""Schedule math: when a job fires. Pure functions, no I/O.

Cron expressions are evaluated on the wall clock of the job's time zone, then mapped to
instants with two DST rules: a wall-clock time that does not exist (spring forward) fires once
at the first valid instant after the gap; one that exists twice (fall back) fires once, the
first time. Every search is bounded, so impossible expressions cannot loop forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

from schemas.api import (
    CronSchedule,
    DelaySchedule,
    IntervalSchedule,
    JobSpec,
    NowSchedule,
    OnceSchedule,
)

# Any expression must match at least once within this many years (e.g. `0 0 29 2 *` does).
_MAX_YEARS_BETWEEN_MATCHES = 8
_MAX_SCAN = 100_000  # wall-clock candidates examined per call, at most


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


def _cron(expression: str, start: datetime) -> croniter:
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ScheduleError("schedule.expression", "a cron expression has 5 fields, or 6 with seconds first")
    try:
        return croniter(
            expression,
            start,
            second_at_beginning=len(fields) == 6,
            max_years_between_matches=_MAX_YEARS_BETWEEN_MATCHES,
        )
    except (CroniterBadCronError, CroniterNotAlphaError, ValueError, KeyError) as exc:
        raise ScheduleError("schedule.expression", f"invalid cron expression: {exc}") from exc


def _wall_to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """Map a naive wall-clock time in `tz` to an instant, applying the DST rules."""
    first = wall.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        return first.astimezone(UTC)  # exists (if twice, fold=0 is the first)
    # In a gap: the transition lies between the two readings of the wall time.
    lo = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    hi = first.astimezone(UTC)
    lo, hi = min(lo, hi), max(lo, hi)
    offset_lo = lo.astimezone(tz).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == offset_lo:
            lo = mid
        else:
            hi = mid
    return hi.replace(microsecond=0)


def _cron_instants(spec: CronSchedule, after: datetime) -> Iterator[datetime]:
    """Instants strictly after `after` at which the cron schedule fires, in order."""
    tz = zone(spec.timezone)
    # Start one hour early on the wall clock so a gap that maps forward is not missed.
    wall_start = (after.astimezone(tz) - timedelta(hours=1)).replace(tzinfo=None)
    it = _cron(spec.expression, wall_start)
    last: datetime | None = None
    for _ in range(_MAX_SCAN):
        try:
            wall = it.get_next(datetime)
        except CroniterBadDateError:
            return
        instant = _wall_to_instant(wall, tz)
        if instant > after and (last is None or instant > last):
            last = instant
            yield instant


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
