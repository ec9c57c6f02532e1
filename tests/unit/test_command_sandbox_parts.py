"""The command executor's pure parts: spec checks, the output limit, outcomes, bwrap's argv."""

from __future__ import annotations

import signal

import pytest

from executor.command.output import LimitedOutput
from executor.command.sandbox import _outcome
from executor.command.spec import CommandSpec, Limits, SpecRefused, relative_path


class Kept:
    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, chunk: bytes) -> None:
        self.data += chunk


async def test_the_output_limit_keeps_the_first_bytes_and_counts_all() -> None:
    kept = Kept()
    out = LimitedOutput(kept, 10)
    for chunk in (b"1234", b"567890ab", b"cdef"):
        await out.write(chunk)
    assert (bytes(kept.data), out.total, out.kept, out.truncated) == (b"1234567890", 16, 10, True)


async def test_output_exactly_at_the_limit_is_whole() -> None:
    out = LimitedOutput(Kept(), 4)
    await out.write(b"abcd")
    await out.write(b"")
    assert (out.total, out.truncated) == (4, False)


@pytest.mark.parametrize(("ended", "code", "expected"), [
    (None, 0, ("succeeded", 0, None, None)),
    (None, 3, ("failed", 3, None, None)),
    (None, 128 + signal.SIGKILL, ("failed", 137, 9, "killed by signal 9")),
    (None, 128 + signal.SIGXCPU, ("failed", 152, 24, "CPU time limit exceeded")),
    (None, 128 + signal.SIGXFSZ, ("failed", 153, 25, "file size limit exceeded")),
    (None, -signal.SIGKILL, ("failed", -9, 9, "killed by signal 9")),
    ("timed_out", -9, ("timed_out", None, None, "timed out: the process tree was killed")),
    ("cancelled", -9, ("cancelled", None, None, "cancelled: the process tree was killed")),
])
def test_outcomes(ended: str | None, code: int, expected: tuple[object, ...]) -> None:
    outcome = _outcome(ended, code, LimitedOutput(Kept(), 1), 5)  # type: ignore[arg-type]
    assert (outcome.status, outcome.exit_code, outcome.signal, outcome.error) == expected


@pytest.mark.parametrize("path", ["", "/abs", "..", "a/../b", "a//b", "./a", "a/.", "a\0b", "x" * 1025])
def test_paths_must_stay_inside_the_job_directory(path: str) -> None:
    with pytest.raises(SpecRefused):
        relative_path(path, "files")


def test_a_plain_spec_passes_its_checks() -> None:
    CommandSpec(("python3", "-c", "print(1)"), env={"A_B": "1"}, files={"src/a.py": "x"},
                working_dir="src", limits=Limits()).check()


@pytest.mark.parametrize("limits", [Limits(cpu_seconds=0), Limits(output_bytes=-1),
                                    Limits(processes=3), Limits(memory_mb=True)])
def test_limits_must_be_positive(limits: Limits) -> None:
    with pytest.raises(SpecRefused, match="limits"):
        limits.check()
