"""What the dispatcher records of an entry dropped at the pop (dispatcher.requests.dropped_status),
for every verdict pop_due.lua can give and for hostile ones it cannot."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.requests import dropped_status
from duetime.due_set import Entry, Popped, lost_state
from duetime.run_ids import run_id_for

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ENTRY = Entry("job-1", 2, 1_700_000_000_000, 3, 5)


def popped(verdict: str, spec: dict[str, str] | None = None,
           entry: Entry | None = ENTRY) -> Popped:
    member = entry.member() if entry else "not|a|member"
    return Popped(verdict, entry, member, 1_700_000_000_000, spec)


@pytest.mark.parametrize("state", ["cancelled", "completed"])
def test_a_lost_attempt_of_an_ended_job_ends_cancelled_and_says_why(state: str) -> None:
    event = dropped_status(popped(f"lost-{state}", {"tenant": "acme"}), NOW)
    assert event is not None
    assert (event.run_id, event.tenant, event.attempt, event.status, event.final,
            event.finished_at) == (run_id_for("job-1", ENTRY.scheduled_ms), "acme", 3,
                                   "cancelled", True, NOW)
    assert event.error == (f"the executor running attempt 3 was lost (its lease expired) and "
                           f"the job was {state} before the attempt could run again: whether "
                           "the call was made is unknown")


@pytest.mark.parametrize("verdict", ["cancelled", "completed", "stale", "unknown", "malformed",
                                     "lost", "lost-", "LOST-cancelled", "run"])
def test_any_other_drop_but_a_pause_records_nothing(verdict: str) -> None:
    assert dropped_status(popped(verdict, {"tenant": "acme"}), NOW) is None


def test_a_paused_firing_is_recorded_skipped_not_final() -> None:
    event = dropped_status(popped("paused", {"tenant": "acme"}), NOW)
    assert event is not None and (event.status, event.final, event.reason) == (
        "skipped", False, "paused")


def test_a_lost_attempt_without_a_tenant_kept_is_an_error_the_dispatcher_logs() -> None:
    with pytest.raises(KeyError):
        dropped_status(popped("lost-completed", None), NOW)
    with pytest.raises(KeyError):
        dropped_status(popped("lost-cancelled", {}), NOW)


def test_a_malformed_member_is_not_recorded() -> None:
    assert dropped_status(popped("lost-cancelled", {"tenant": "acme"}, entry=None), NOW) is None


def test_lost_state_reads_only_lost_verdicts() -> None:
    assert lost_state("lost-cancelled") == "cancelled"
    assert lost_state("lost-completed") == "completed"
    assert [lost_state(v) for v in ("lost", "lost-", "cancelled", "stale", "", "-x")] == [None] * 6
