"""bench.workloads and bench.pacing: the peer harness's workloads and the steady-rate plan."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from itertools import pairwise

import pytest

from bench.pacing import open_loop, steady_offsets_ms
from bench.peer_workloads import selected
from bench.workloads import job_bodies, make_spec

SINK = "http://127.0.0.1:28001"
NOW = 1_764_120_000_000


@pytest.mark.parametrize(("rate", "seconds"), [(200, 20), (1000, 20), (3000, 20), (500, 10)])
def test_steady_plan_puts_rate_events_in_every_second(rate: int, seconds: int) -> None:
    plan = steady_offsets_ms(rate, seconds)
    assert len(plan) == rate * seconds
    assert plan[0] == 0 and plan[-1] < seconds * 1000
    assert all(a <= b for a, b in pairwise(plan))
    assert set(Counter(offset // 1000 for offset in plan).values()) == {rate}


def test_steady_plan_spacing_is_the_peer_harness_formula() -> None:
    assert steady_offsets_ms(3, 1) == [0, 333, 666]
    assert steady_offsets_ms(1000, 0.005) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="positive"):
        steady_offsets_ms(0, 20)


async def test_open_loop_starts_each_call_at_its_planned_time_once() -> None:
    calls: list[tuple[int, float]] = []

    async def call(i: int, planned: float) -> None:
        calls.append((i, planned))

    await open_loop([0, 1, 2, 2], call)
    assert sorted(i for i, _ in calls) == [0, 1, 2, 3]
    planned = dict(calls)
    assert [round((planned[i] - planned[0]) * 1000, 6) for i in range(4)] == [0, 1, 2, 2]


def test_w2_jobs_are_due_on_the_steady_plan_after_a_10_s_lead() -> None:
    spec = make_spec("W2", SINK, rate=3000, now_ms=NOW, run_id="ab12")
    assert spec.t0_ms == NOW + 10_000 and spec.expected == 60_000
    assert [due - spec.t0_ms for _, due in spec.oneshots] == steady_offsets_ms(3000, 20)
    assert spec.bound_s - spec.t0_ms / 1000 == pytest.approx(80, abs=0.01)  # delivered by t0+80 s
    body = job_bodies(spec)[1]
    assert body["schedule"] == {"type": "once", "at": "2025-11-26T01:20:10.000+00:00"}
    assert body["target"]["url"] == f"{SINK}/hook/duetime/ab12-1?due={NOW + 10_000}"


def test_w1_is_every_job_due_at_t0() -> None:
    spec = make_spec("W1", SINK, n=10_000, now_ms=NOW)
    assert spec.expected == 10_000 and {due for _, due in spec.oneshots} == {spec.t0_ms}
    assert spec.last_due_ms == spec.t0_ms


def test_w3_is_m_interval_jobs_with_max_runs_on_a_one_second_grid() -> None:
    spec = make_spec("W3", SINK, m=200, now_ms=NOW, run_id="cd34")
    assert spec.expected == 4000 and spec.last_due_ms == spec.t0_ms + 19_000
    bodies = job_bodies(spec)
    assert len(bodies) == 200
    schedule = bodies[7]["schedule"]
    assert schedule["type"] == "interval" and schedule["every_seconds"] == 1
    assert datetime.fromisoformat(schedule["start_at"]).timestamp() * 1000 == spec.t0_ms
    assert bodies[7]["max_runs"] == 20
    assert bodies[7]["target"]["url"].endswith(f"/hook/duetime/cd34-r7?t0={spec.t0_ms}&every=1000&n=20")


def test_unknown_workload_is_refused() -> None:
    with pytest.raises(ValueError, match="W4"):
        make_spec("W4", SINK)


@pytest.mark.parametrize(("select", "names"), [
    ("all", ["w2-200", "w2-1000", "w2-3000", "w1-10000", "w3-200"]),
    ("w2", ["w2-200", "w2-1000", "w2-3000"]),
    ("w3,w1", ["w1-10000", "w3-200"]),
    ("w2-1000,reads,creates", ["w2-1000"]),
    ("reads", []),
    ("", []),
])
def test_make_bench_selection(select: str, names: list[str]) -> None:
    assert selected(select) == names


def test_make_bench_selection_refuses_an_unknown_workload() -> None:
    with pytest.raises(SystemExit, match="w2-500"):
        selected("w2-500")
