from __future__ import annotations

from typing import Any

from dispatcher.requests import apply_catchup
from duetime.due_set import MANUAL, Entry, Popped

NOW = 100_000


def popped(job: str, due: int, policy: str = "latest", flag: str = "s", attempt: int = 1,
           one_shot: bool = False, window: int = 3600) -> Popped:
    spec: dict[str, Any] = {"catchup": policy, "catchup_window_seconds": window,
                            "one_shot": one_shot, "tenant": "t"}
    e = Entry(job, 1, due, attempt, 5, flag)
    return Popped("run", e, e.member(), due, spec)


def test_latest_keeps_only_the_newest_missed_firing() -> None:
    batch = [popped("a", d) for d in (10_000, 20_000, 30_000)] + [popped("a", NOW - 100)]
    fire, skip = apply_catchup(batch, NOW, grace_ms=2000)
    assert [p.due_ms for p in fire] == [NOW - 100, 30_000]
    assert [p.due_ms for p in skip] == [10_000, 20_000]


def test_none_skips_every_missed_firing_and_all_respects_the_window() -> None:
    fire, skip = apply_catchup([popped("n", 10_000, "none"), popped("n", NOW, "none")], NOW, 2000)
    assert [p.due_ms for p in fire] == [NOW] and len(skip) == 1
    batch = [popped("x", 10_000, "all", window=60), popped("x", 50_000, "all", window=60)]
    fire, skip = apply_catchup(batch, NOW, 2000)
    assert [p.due_ms for p in fire] == [50_000] and [p.due_ms for p in skip] == [10_000]


def test_one_shot_retries_and_run_now_always_fire() -> None:
    batch = [popped("o", 1, "none", one_shot=True), popped("r", 1, "none", attempt=2),
             popped("m", 1, "none", flag=MANUAL)]
    fire, skip = apply_catchup(batch, NOW, 2000)
    assert len(fire) == 3 and skip == []
