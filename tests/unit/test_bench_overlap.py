"""bench.overlap's split of the executor's start steps: the run's own starts, read as the
difference of two scrapes of a cumulative histogram."""

from __future__ import annotations

from bench.overlap import step_shares


def test_shares_are_of_the_runs_starts_only() -> None:
    before = {("wake", "0.001"): 100.0, ("wake", "0.005"): 150.0, ("wake", "0.025"): 190.0,
              ("wake", "+Inf"): 200.0}
    after = {("wake", "0.001"): 130.0, ("wake", "0.005"): 210.0, ("wake", "0.025"): 290.0,
             ("wake", "+Inf"): 300.0,
             ("verdict", "0.001"): 10.0, ("verdict", "0.005"): 40.0, ("verdict", "0.025"): 50.0,
             ("verdict", "+Inf"): 50.0}
    assert step_shares(before, after) == {
        "wake": {"0.001": 0.3, "0.005": 0.6, "0.025": 1.0},
        "verdict": {"0.001": 0.2, "0.005": 0.8, "0.025": 1.0}}


def test_a_step_without_starts_in_the_run_is_left_out() -> None:
    same = {("wake", "+Inf"): 5.0, ("wake", "0.001"): 5.0}
    assert step_shares(same, same) == {}
