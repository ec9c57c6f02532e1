from __future__ import annotations

import pytest

from duetime.due_set import Entry, Flag
from duetime.run_ids import run_id_for


def test_member_round_trips_and_orders_by_priority() -> None:
    hi = Entry("job-a", 3, 1_700_000_000_000, 1, 9)
    lo = Entry("job-b", 1, 1_700_000_000_000, 2, 0, Flag.MANUAL)
    assert Entry.parse(hi.member()) == hi
    assert Entry.parse(lo.member()) == lo
    # Equal scores sort by member: priority 9 must come first.
    assert sorted([lo.member(), hi.member()])[0] == hi.member()


def test_run_id_is_deterministic_and_shared_by_attempts() -> None:
    e = Entry("job-a", 1, 1234, 1, 5)
    assert e.run_id == run_id_for("job-a", 1234) == e.next_attempt().run_id
    assert e.runkey != e.next_attempt().runkey
    assert run_id_for("job-a", 1235) != e.run_id


@pytest.mark.parametrize("bad", ["", "x|y", "1|a|b|c|d|e", "1|a|1|2"])
def test_malformed_members_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        Entry.parse(bad)
