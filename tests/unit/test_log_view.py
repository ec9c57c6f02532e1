"""`duetime logs`: JSON lines made readable, filtered, and followed across files as they grow."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from duetime.log_view import Filter, Tail, main, render

LINE = orjson.dumps({"ts": "2026-11-26T01:05:52.798+00:00", "level": "warning",
                     "logger": "executor.service", "event": "attempt finished",
                     "service": "executor", "status": "failed", "run_id": "r1", "job_id": "j1",
                     "attempt": 2, "error": "HTTP 500 from the target", "lateness_ms": 3}).decode()


def test_identifying_fields_come_first_then_the_rest() -> None:
    shown = render(LINE, "executor", Filter())
    assert shown == ("01:05:52.798 WARNING executor       attempt finished job_id=j1 run_id=r1 "
                     'attempt=2 status=failed error="HTTP 500 from the target" lateness_ms=3')


def test_filters_by_service_level_and_id() -> None:
    assert render(LINE, "executor", Filter(services=frozenset({"writer"}))) is None
    assert render(LINE, "executor", Filter(min_level=40)) is None
    assert render(LINE, "executor", Filter(match="j2")) is None
    assert render(LINE, "executor", Filter(services=frozenset({"executor"}), min_level=30,
                                           match="j1")) is not None


def test_other_lines_pass_through_with_their_component() -> None:
    assert render("=== stack.sh: starting writer\n", "writer", Filter()) == \
        "writer === stack.sh: starting writer"
    assert render("", "writer", Filter()) is None
    assert render("[1, 2]", "kafka", Filter()) == "kafka [1, 2]"
    colored = render(LINE, "executor", Filter(), color=True)
    assert colored is not None and "\x1b[33mWARNING" in colored


def test_follows_growing_new_and_truncated_files(tmp_path: Path) -> None:
    (tmp_path / "writer.log").write_text("old 1\nold 2\nold 3\n")
    tail = Tail(tmp_path, lines=2)
    assert list(tail.poll()) == [("writer", "old 2"), ("writer", "old 3")]
    with (tmp_path / "writer.log").open("a") as f:
        f.write("new 1\nhalf")
    (tmp_path / "executor-2.log").write_text("started\n")
    assert list(tail.poll()) == [("executor-2", "started"), ("writer", "new 1")]
    with (tmp_path / "writer.log").open("a") as f:
        f.write(" done\n")
    assert list(tail.poll()) == [("writer", "half done")]
    (tmp_path / "writer.log").write_text("after rotation\n")
    assert list(tail.poll()) == [("writer", "after rotation")]
    assert list(tail.poll()) == []


def test_a_rotated_log_is_read_to_its_end_then_the_new_one_from_its_start(tmp_path: Path) -> None:
    """supervisord renames writer.log to writer.log.1 and opens a new writer.log (ADR 0034);
    the new one may already be longer than where the old one was read to."""
    log = tmp_path / "writer.log"
    log.write_text("before\n")
    tail = Tail(tmp_path, lines=5)
    assert list(tail.poll()) == [("writer", "before")]
    with log.open("a") as f:
        f.write("written just before the rotation\nunfinished")
    log.rename(tmp_path / "writer.log.1")
    log.write_text("first line of the new file, longer than the old one was\nsecond\n")
    assert list(tail.poll()) == [
        ("writer", "written just before the rotation"), ("writer", "unfinished"),
        ("writer", "first line of the new file, longer than the old one was"), ("writer", "second")]
    with log.open("a") as f:
        f.write("third\n")
    assert list(tail.poll()) == [("writer", "third")]


def test_command_prints_and_exits_without_follow(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "executor.log").write_text(LINE + "\n")
    assert main(["--dir", str(tmp_path), "--no-follow", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "attempt finished job_id=j1" in out
    assert main(["--dir", str(tmp_path / "missing"), "--no-follow"]) == 1
