"""Which priority lanes the command executor stops fetching (executor.command.lanes)."""

from __future__ import annotations

import pytest

from executor.command.lanes import lanes_to_pause
from schemas.topics import COMMAND_RUNS, runs_topic


@pytest.mark.parametrize(("buffered", "lag", "paused"), [
    ({}, {}, set()),
    ({"high": 1}, {}, {"normal", "low"}),
    ({}, {"high": 1}, {"normal", "low"}),  # not fetched yet counts as waiting
    ({"normal": 1}, {}, {"low"}),
    ({"low": 3}, {}, set()),
    ({"low": 4}, {}, {"low"}),  # its own buffer is full
    ({}, {"normal": 50}, {"low"}),  # its own lag never pauses a lane: fetching brings it down
    ({"high": 4, "low": 1}, {}, {"high", "normal", "low"}),
    ({"normal": 2, "low": 2}, {"low": 9}, {"low"}),
])
def test_lower_lanes_pause_while_a_higher_lane_has_work(
    buffered: dict[str, int], lag: dict[str, int], paused: set[str],
) -> None:
    assert lanes_to_pause(buffered, lag, per_lane=4) == paused


@pytest.mark.parametrize(("priority", "lane"), [(9, "high"), (7, "high"), (6, "normal"),
                                                (5, "normal"), (3, "normal"), (2, "low"),
                                                (0, "low")])
def test_command_runs_go_to_the_lane_of_their_priority(priority: int, lane: str) -> None:
    assert runs_topic("command", priority) == COMMAND_RUNS[lane]


@pytest.mark.parametrize("target_type", ["http", "kafka"])
def test_other_runs_stay_on_duetime_runs(target_type: str) -> None:
    assert runs_topic(target_type, 9) == "duetime.runs"
