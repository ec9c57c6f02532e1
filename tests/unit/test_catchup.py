"""Catch-up by outage (ADR 0011): the dispatcher's split and the loaders' plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dispatcher.requests import apply_catchup
from duetime.catchup import Outage, merged
from duetime.due_set import MANUAL, Entry, Flag, Popped
from duetime.loading import plan
from duetime.timeutil import to_ms
from schemas.api import JobSpec

DOWN = [Outage(50_000, 100_000)]


def popped(job: str, due: int, policy: str = "latest", flag: Flag = Flag.SCHEDULED, attempt: int = 1,
           one_shot: bool = False, window: int = 3600, nxt: int | None = None) -> Popped:
    spec: dict[str, Any] = {"catchup": policy, "catchup_window_seconds": window,
                            "one_shot": one_shot, "tenant": "t"}
    e = Entry(job, 1, due, attempt, 5, flag)
    return Popped("run", e, e.member(), due, spec, nxt)


def test_late_is_not_missed_without_an_outage() -> None:
    batch = [popped("n", d, "none") for d in range(1000, 40_000, 1000)]
    fire, skip = apply_catchup(batch, DOWN)
    assert len(fire) == len(batch) and skip == []


def test_latest_fires_the_firing_whose_next_instant_is_after_the_outage_in_any_pop() -> None:
    firsts = [popped("a", d, nxt=d + 10_000) for d in (60_000, 70_000, 80_000)]
    assert apply_catchup(firsts, DOWN) == ([], firsts)
    newest = popped("a", 90_000, nxt=100_000)
    assert apply_catchup([newest, popped("a", 100_000, nxt=110_000)], DOWN)[1] == []


def test_none_skips_and_all_fires_inside_the_window_before_the_outage_ended() -> None:
    fire, skip = apply_catchup([popped("n", 60_000, "none"), popped("n", 100_000, "none")], DOWN)
    assert [p.due_ms for p in fire] == [100_000] and len(skip) == 1
    batch = [popped("x", 55_000, "all", window=30), popped("x", 80_000, "all", window=30)]
    fire, skip = apply_catchup(batch, DOWN)
    assert [p.due_ms for p in fire] == [80_000] and [p.due_ms for p in skip] == [55_000]


def test_one_shot_retries_and_run_now_always_fire() -> None:
    batch = [popped("o", 60_000, "none", one_shot=True), popped("r", 60_000, "none", attempt=2),
             popped("m", 60_000, "none", flag=MANUAL)]
    fire, skip = apply_catchup(batch, DOWN)
    assert len(fire) == 3 and skip == []


def _every_second(policy: str) -> JobSpec:
    return JobSpec.model_validate({"name": "c", "schedule": {"type": "interval", "every_seconds": 1},
                                   "target": {"type": "http", "url": "http://sink/x"},
                                   "catchup": policy})


def _plan_all(policy: str, outages: list[Outage]) -> tuple[list[datetime], list[datetime]]:
    """An hour's backlog (3,599 instants) planned in chunks of 1,000, as the watcher does."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    created = now - timedelta(hours=1)
    spec = _every_second(policy)
    cursor: datetime | None = created
    fire: list[datetime] = []
    skipped: list[datetime] = []
    while cursor is not None and cursor < now:
        window = plan(spec, created, cursor, now, now + timedelta(seconds=5), 0, outages)
        fire += window.fire
        skipped += window.skipped
        cursor = window.cursor
    return [t for t in fire if t < now], skipped


def test_plan_judges_by_outage_across_chunks() -> None:
    now = to_ms(datetime(2030, 1, 1, tzinfo=UTC))
    hour = [Outage(now - 3_600_500, now)]
    fired, skipped = _plan_all("latest", hour)
    assert [to_ms(t) for t in fired] == [now - 1000] and len(skipped) == 3598
    fired, skipped = _plan_all("all", hour)
    assert len(fired) == 3599 and skipped == []
    fired, skipped = _plan_all("none", hour)
    assert fired == [] and len(skipped) == 3599
    fired, skipped = _plan_all("none", [])  # late (the loader was busy), not down
    assert len(fired) == 3599 and skipped == []


def test_plan_with_nothing_before_the_horizon() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    window = plan(_every_second("latest"), now, now + timedelta(seconds=30), now, now)
    assert window.fire == [] and window.skipped == [] and window.cursor is not None


def test_overlapping_outages_of_the_two_paths_merge_into_one() -> None:
    assert merged([Outage(5, 9), Outage(1, 6), Outage(20, 30), Outage(9, 12)]) == [
        Outage(1, 12), Outage(20, 30)]
    assert merged([]) == []
