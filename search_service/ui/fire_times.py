"""The next fire times of a job as people read them: in the job's own zone, with the instants
where that zone's UTC offset changes (daylight saving time) marked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class FireTime:
    utc: str
    local: str
    offset: str
    dst_change: str | None  # "UTC+01:00 → UTC+02:00" when the offset differs from the last one


def _offset(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def fire_times(times: Sequence[str], zone: str, now: datetime) -> list[FireTime]:
    """`times` as preview_view returns them (RFC 3339, UTC); the first is compared with the
    offset in force `now`, so a change before the first firing is marked too."""
    tz = ZoneInfo(zone)
    last = _offset(now.astimezone(tz).utcoffset())
    out = []
    for text in times:
        local = datetime.fromisoformat(text).astimezone(tz)
        offset = _offset(local.utcoffset())
        out.append(FireTime(utc=text, local=local.strftime("%Y-%m-%d %H:%M:%S"), offset=offset,
                            dst_change=None if offset == last else f"{last} → {offset}"))
        last = offset
    return out
