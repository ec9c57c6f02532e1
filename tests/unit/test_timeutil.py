"""duetime.timeutil.iso: the one format of every instant the API returns."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from duetime.timeutil import iso

EPOCH_1 = datetime(1, 1, 1, tzinfo=UTC)
SPAN_US = int((datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH_1)
              / timedelta(microseconds=1))


def reference(dt: datetime) -> str:
    """The format as first written: Python's isoformat of the UTC instant, Z for +00:00."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_iso_writes_what_isoformat_writes() -> None:
    rng = random.Random(46)
    for _ in range(50_000):
        dt = EPOCH_1 + timedelta(microseconds=rng.randrange(SPAN_US))
        if rng.random() < 0.3:
            dt = dt.replace(microsecond=0)  # no fraction at all, as isoformat
        if rng.random() < 0.3 and 2 < dt.year < 9998:
            dt = dt.astimezone(timezone(timedelta(minutes=rng.randrange(-900, 900))))
        assert iso(dt) == reference(dt), dt


def test_iso_edges() -> None:
    assert iso(None) is None
    assert iso(datetime(2099, 1, 1, tzinfo=UTC)) == "2099-01-01T00:00:00Z"
    assert iso(datetime(2026, 3, 29, 1, 30, 0, 1000, tzinfo=timezone(timedelta(hours=2)))) \
        == "2026-03-28T23:30:00.001000Z"
    assert iso(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) \
        == "9999-12-31T23:59:59.999999Z"
    assert iso(EPOCH_1) == "0001-01-01T00:00:00Z"
