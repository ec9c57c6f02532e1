"""bench.stack_state.wipe_and_start: every bit of the stack's state goes, Kafka's jars stay."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import stack_state


def test_wipe_deletes_all_state_but_kafkas_jars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = tmp_path / ".stack"
    for f in ("env", "api_keys", "pg/base/1", "redis/appendonly.aof", "logs/writer.log",
              "kafka/cluster.id", "kafka/data/meta.properties", "kafka/libs/kafka_2.13-4.1.1.jar"):
        (stack / f).parent.mkdir(parents=True, exist_ok=True)
        (stack / f).write_text("x")
    calls: list[list[str]] = []

    def run(args: list[str], **_: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append([Path(args[0]).name, *args[1:]])
        if args[1] == "up":  # started only after everything was deleted
            assert sorted(str(p.relative_to(stack)) for p in stack.rglob("*")) == [
                "kafka", "kafka/libs", "kafka/libs/kafka_2.13-4.1.1.jar"]
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(stack_state, "STACK_DIR", stack)
    monkeypatch.setattr(stack_state, "KEEP", {stack / "kafka" / "libs"})
    monkeypatch.setattr(subprocess, "run", run)
    stack_state.wipe_and_start()
    assert calls == [["stack.sh", "down"], ["stack.sh", "up"]]
