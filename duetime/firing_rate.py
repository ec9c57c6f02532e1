"""How fast a schedule can fire: what the per-tenant firing-rate quota adds up (docs/quotas.md).

A schedule's peak rate is one firing per its shortest gap between two firings, in firings per
second. It is an upper bound at the schedule's busiest moment, not its average: `0,1 * * * * *`
fires twice a minute but can fire two seconds running, so it counts as 1/s. One-shot schedules
fire once and count 0 (their creation rate is limited instead).
"""

from __future__ import annotations

from itertools import pairwise

from duetime.schedule import Cron, parse_cron
from schemas.api import CronSchedule, IntervalSchedule, JobSpec

_DAY_SECONDS = 86400


def _shortest_gap_seconds(cron: Cron) -> int:
    """The finest cron field with more than one value sets the shortest gap; the gap from its
    last value round to its first (the next minute, hour, day) counts too."""
    for values, span, unit in ((cron.seconds, 60, 1), (cron.minutes, 60, 60),
                               (cron.hours, 24, 3600)):
        if len(values) > 1:
            gaps = [b - a for a, b in pairwise(values)]
            gaps.append(span - values[-1] + values[0])
            return min(gaps) * unit
    return _DAY_SECONDS  # one time of day: at most daily


def cron_rate(expression: str) -> float:
    return 1 / _shortest_gap_seconds(parse_cron(expression))


def peak_rate(spec: JobSpec) -> float:
    """Firings per second `spec` can reach at its busiest (a validated spec)."""
    schedule = spec.schedule
    if isinstance(schedule, IntervalSchedule):
        return 1 / schedule.every_seconds
    if isinstance(schedule, CronSchedule):
        return cron_rate(schedule.expression)
    return 0.0
