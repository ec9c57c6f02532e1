"""Time helpers: every instant in duetime is an aware UTC datetime or integer epoch ms."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def iso(dt: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z, microseconds only when there are some: what
    `dt.astimezone(UTC).isoformat()` writes, with Z for +00:00. orjson writes it ~3 times faster
    (a list page formats 200 instants, ADR 0046)."""
    if dt is None:
        return None
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return orjson.dumps(dt, option=orjson.OPT_UTC_Z)[1:-1].decode()
