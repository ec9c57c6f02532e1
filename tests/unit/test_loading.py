"""Planning at the max_runs cap keeps the loader's cursor, so a firing skipped for good later
(catch-up, overlap) can be replaced by the next instant (issue 6 defect 8)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from duetime.loading import plan
from schemas.api import JobSpec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = JobSpec.model_validate({"name": "m", "schedule": {"type": "interval", "every_seconds": 1},
                               "target": {"type": "http", "url": "http://x/y"}, "max_runs": 3})


def test_planning_up_to_the_cap_leaves_the_cursor_on_the_next_instant() -> None:
    first = T0 + timedelta(seconds=1)
    window = plan(SPEC, T0, first, T0, T0 + timedelta(seconds=20), planned=1)
    assert window.fire == [first, first + timedelta(seconds=1)]  # 3 - 1 already planned
    assert window.cursor == first + timedelta(seconds=2)  # not None: the job may need it


def test_at_the_cap_nothing_is_planned_and_the_cursor_stays() -> None:
    at = T0 + timedelta(seconds=4)
    window = plan(SPEC, T0, at, T0, T0 + timedelta(seconds=20), planned=3)
    assert (window.fire, window.cursor) == ([], at)
