"""deploy/local/liveness.py: which hung instances are killed, and never a process not ours."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.scripts import load_script

live = load_script("deploy/local/liveness.py")


def test_a_kill_needs_that_many_missed_answers_in_a_row_of_one_pid() -> None:
    probes = live.Probes(failures=3)
    assert probes.record({("writer", 10): False, ("executor", 11): True}) == []
    assert probes.record({("writer", 10): False, ("executor", 11): False}) == []
    assert probes.record({("writer", 10): True, ("executor", 11): False}) == []  # answered
    assert probes.record({("writer", 10): False, ("executor", 11): False}) == [("executor", 11)]
    # The instance restarted under a new pid: counting starts again.
    assert probes.record({("writer", 10): False, ("executor", 12): False}) == []
    assert probes.record({("writer", 10): False, ("executor", 12): False}) == [("writer", 10)]


def test_only_children_of_our_supervisord_leading_their_group_count() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             start_new_session=True)
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert live.ours(child.pid, supervisord=os.getpid())
        assert not live.ours(stray.pid, supervisord=os.getpid())  # not its own group's leader
        assert not live.ours(child.pid, supervisord=os.getpid() + 1)  # another parent
    finally:
        for p in (child, stray):
            p.kill()
            p.wait()
    assert not live.ours(child.pid, supervisord=os.getpid())  # gone


def test_instances_come_from_the_run_directory_and_skip_what_is_not_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             start_new_session=True)
    try:
        (tmp_path / "writer.env").write_bytes(b"A=1\0DUETIME_HTTP_PORT=18103\0")
        (tmp_path / "writer.pid").write_text(f"{child.pid}\n")
        (tmp_path / "watcher.env").write_bytes(b"DUETIME_HTTP_PORT=18104\0")
        (tmp_path / "watcher.pid").write_text("999999999\n")  # long gone
        (tmp_path / "dispatcher.env").write_bytes(b"NO_PORT=1\0")
        (tmp_path / "dispatcher.pid").write_text(f"{child.pid}\n")
        (tmp_path / "executor.env").write_bytes(b"DUETIME_HTTP_PORT=18106\0")  # no pid file
        monkeypatch.setattr(live, "ours", lambda pid: pid == child.pid)
        assert live.instances(tmp_path) == {"writer": (child.pid, 18103)}
    finally:
        child.kill()
        child.wait()
