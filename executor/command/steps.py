"""Steps targets: every step through `sh -e`, in order, in one sandbox (ADR 0032).

One driver shell runs the steps and stops at the first that fails. Around each step it writes
a marker line to the output, `\\x1e<nonce> start|end NAME [EXIT]`, with a nonce drawn for this
run alone; `StepsOutput` takes the markers out of the stream as it passes, timing each step,
keeping its status and exit code, and storing its output twice: in the run's whole output and
in the step's own object (`…/step=NAME`). The markers never reach the store. A step can print
a marker only by reading the driver's arguments in /proc, and then only confuses the record
of its own run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from executor.command.output import LimitedOutput, OutputSink, StoredOutput
from schemas.api import StepsTarget

DRIVER = r"""nonce=$1; shift
while [ $# -gt 1 ]; do
  name=$1; script=$2; shift 2
  printf '\036%s start %s\n' "$nonce" "$name"
  sh -e -c "$script" "$name" </dev/null
  code=$?
  printf '\036%s end %s %d\n' "$nonce" "$name" "$code"
  [ "$code" -eq 0 ] || exit "$code"
done
"""
# The sandbox passes everything on; StepsOutput applies the job's output limit itself, to the
# output without the markers.
UNLIMITED = 2**62


def steps_argv(target: StepsTarget, nonce: str) -> tuple[str, ...]:
    args = [arg for step in target.steps for arg in (step.name, step.run)]
    return ("sh", "-c", DRIVER, "duetime-steps", nonce, *args)


def new_nonce() -> str:
    return secrets.token_hex(16)


@dataclass
class StepRecord:
    name: str
    status: str = "skipped"
    exit_code: int | None = None
    duration_ms: int | None = None
    started: float | None = None


class _Tee:
    """The whole output, and the step running now."""

    def __init__(self, whole: OutputSink) -> None:
        self.whole = whole
        self.step: OutputSink | None = None

    async def write(self, chunk: bytes) -> None:
        await self.whole.write(chunk)
        if self.step is not None:
            await self.step.write(chunk)


class StepsOutput:
    """The sink a steps run writes to: markers out, the rest limited and stored."""

    def __init__(self, target: StepsTarget, nonce: str, whole: OutputSink,
                 open_step: Callable[[str], StoredOutput], limit: int) -> None:
        self.prefix = b"\x1e" + nonce.encode() + b" "
        self.records = {step.name: StepRecord(step.name) for step in target.steps}
        self.tee = _Tee(whole)
        self.limited = LimitedOutput(self.tee, limit)
        self.open_step = open_step
        self.current: StoredOutput | None = None
        self.opened: list[StoredOutput] = []
        self.current_name: str | None = None
        self.buffer = b""

    async def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        while True:
            at = self.buffer.find(self.prefix)
            if at < 0:
                # Keep what could be the start of a marker split across two chunks.
                keep = next((n for n in range(min(len(self.prefix) - 1, len(self.buffer)), 0, -1)
                             if self.prefix.startswith(self.buffer[-n:])), 0)
                await self._data(self.buffer[:len(self.buffer) - keep])
                self.buffer = self.buffer[len(self.buffer) - keep:]
                return
            end = self.buffer.find(b"\n", at)
            if end < 0:
                await self._data(self.buffer[:at])
                self.buffer = self.buffer[at:]
                return
            await self._data(self.buffer[:at])
            await self._marker(self.buffer[at + len(self.prefix):end].decode(errors="replace"))
            self.buffer = self.buffer[end + 1:]

    async def _data(self, data: bytes) -> None:
        if data:
            await self.limited.write(data)

    async def _marker(self, text: str) -> None:
        kind, _, rest = text.partition(" ")
        name, _, code = rest.partition(" ")
        record = self.records.get(name)
        if record is None:
            return
        if kind == "start":
            record.status, record.started = "running", time.monotonic()
            self.current = self.open_step(name)
            self.opened.append(self.current)
            self.tee.step = self.current
        elif kind == "end" and code.lstrip("-").isdigit():
            record.exit_code = int(code)
            record.status = "succeeded" if record.exit_code == 0 else "failed"
            await self._end_step(record)

    async def _end_step(self, record: StepRecord) -> None:
        if record.started is not None:
            record.duration_ms = int((time.monotonic() - record.started) * 1000)
        self.tee.step = None
        if self.current is not None:
            current, self.current = self.current, None
            await current.close()

    async def finish(self, run_status: str) -> list[StepRecord]:
        """Flush what is left; a step still running ends with the run's status (timed out,
        cancelled); steps never reached stay `skipped`."""
        rest, self.buffer = self.buffer, b""
        await self._data(rest)
        for record in self.records.values():
            if record.status == "running":
                record.status = run_status if run_status != "succeeded" else "failed"
                await self._end_step(record)
        return list(self.records.values())

    async def abort(self) -> None:
        for stored in self.opened:
            await stored.abort()
