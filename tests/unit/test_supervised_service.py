"""deploy/local/supervised_service.py: the crash-loop backoff and the start's environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.scripts import load_script

sup = load_script("deploy/local/supervised_service.py")
T0 = 1_800_000_000.0


def test_a_start_by_hand_or_after_a_long_run_does_not_wait() -> None:
    assert sup.next_start(None, T0) == (0.0, sup.Restarts(T0, 0))
    long_run = sup.Restarts(T0, 5)
    now = T0 + sup.RESET_AFTER
    assert sup.next_start(long_run, now) == (0.0, sup.Restarts(now, 0))


def test_quick_crashes_back_off_exponentially_up_to_the_cap() -> None:
    state, now, delays = sup.Restarts(T0, 0), T0, []
    for _ in range(8):
        now = state.started + 2  # each run dies two seconds after it started
        delay, state = sup.next_start(state, now)
        delays.append(delay)
        assert state.started == now + delay  # the next run's age counts from its real start
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert sup.MAX_DELAY == 30


def test_a_healthy_run_after_a_crash_loop_resets_the_backoff() -> None:
    looping = sup.Restarts(T0, 6)
    assert sup.next_start(looping, T0 + 5)[0] == sup.MAX_DELAY
    assert sup.next_start(looping, T0 + sup.RESET_AFTER + 1)[0] == 0


@pytest.mark.parametrize("text", ["", "{", "[]", '{"started": "x", "streak": 1}', '{"streak": 1}'])
def test_a_missing_or_torn_state_file_means_start_now(tmp_path: Path, text: str) -> None:
    state = tmp_path / "writer.restarts"
    if text:
        state.write_text(text)
    assert sup.read_restarts(state) is None


def test_the_state_file_round_trips(tmp_path: Path) -> None:
    state = tmp_path / "writer.restarts"
    state.write_text('{"started": 1800000000.5, "streak": 3}')
    assert sup.read_restarts(state) == sup.Restarts(1800000000.5, 3)


def test_the_environment_is_read_as_env_0_wrote_it() -> None:
    raw = b"A=1\0MULTI=line one\nline two\0EMPTY=\0EQ=a=b\0BYTES=\xff\0noequals\0=novalue\0"
    env = sup.parse_env(raw)
    assert env["A"] == "1"
    assert env["MULTI"] == "line one\nline two"
    assert env["EMPTY"] == ""
    assert env["EQ"] == "a=b"
    assert os.fsencode(env["BYTES"]) == b"\xff"  # handed to execve as the bytes it was
    assert "noequals" not in env and "" not in env


def test_a_priority_it_may_not_raise_leaves_the_service_at_the_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    def refused(_: int) -> int:
        raise PermissionError("not root")

    sup.apply_niceness("executor", -5, refused)  # no exception: the service still starts
    assert "executor: niceness -5 not permitted" in capsys.readouterr().out


def test_the_niceness_asked_for_is_applied() -> None:
    asked: list[int] = []

    def renice(n: int) -> int:
        asked.append(n)
        return n

    sup.apply_niceness("writer", 10, renice)
    assert asked == [10]
