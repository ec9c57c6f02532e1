"""StepsOutput takes the steps driver's markers out of the output, wherever chunks split it."""

from __future__ import annotations

from pathlib import Path

import pytest

from duetime.objects.filesystem import FilesystemStore
from executor.command.output import StoredOutput
from executor.command.steps import StepsOutput
from schemas.api import StepsTarget

NONCE = "ab" * 16
TARGET = StepsTarget.model_validate({"type": "steps", "steps": [
    {"name": "build", "run": "x"}, {"name": "test", "run": "y"}, {"name": "deploy", "run": "z"}]})


def stream() -> bytes:
    mark = b"\x1e" + NONCE.encode() + b" "
    return (mark + b"start build\n" + b"compiling\n" + mark + b"end build 0\n"
            + mark + b"start test\n" + b"ran 3 tests, no newline" + mark + b"end test 4\n")


async def read(store: FilesystemStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.get(key)])


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
async def test_markers_are_taken_out_and_each_step_is_kept(tmp_path: Path, size: int) -> None:
    store = FilesystemStore(str(tmp_path))
    whole = StoredOutput(store, "t/whole")
    sink = StepsOutput(TARGET, NONCE, whole, lambda name: StoredOutput(store, f"t/step={name}"),
                       limit=1000)
    data = stream()
    for i in range(0, len(data), size):
        await sink.write(data[i:i + size])
    records = await sink.finish("failed")
    await whole.close()
    assert await read(store, "t/whole") == b"compiling\nran 3 tests, no newline"
    assert await read(store, "t/step=build") == b"compiling\n"
    assert await read(store, "t/step=test") == b"ran 3 tests, no newline"
    assert [(r.name, r.status, r.exit_code) for r in records] == [
        ("build", "succeeded", 0), ("test", "failed", 4), ("deploy", "skipped", None)]
    assert sink.limited.total == len(b"compiling\nran 3 tests, no newline")


async def test_a_step_cut_short_takes_the_runs_status(tmp_path: Path) -> None:
    store = FilesystemStore(str(tmp_path))
    whole = StoredOutput(store, "t/whole")
    sink = StepsOutput(TARGET, NONCE, whole, lambda name: StoredOutput(store, f"t/step={name}"),
                       limit=4)
    await sink.write(b"\x1e" + NONCE.encode() + b" start build\nlong output")
    records = await sink.finish("timed_out")
    await whole.close()
    assert [r.status for r in records] == ["timed_out", "skipped", "skipped"]
    assert (sink.limited.total, sink.limited.truncated) == (11, True)
    assert await read(store, "t/whole") == b"long"
