"""Benchmark: CPU time to decode one message of the internal topics (no stack needed).

The writer validates every command it reads (`JobCommand.model_validate_json`) and every run
status, the executor every run request (`RunRequested.model_validate_json`); they are the
trust boundary and stay pydantic (ADR 0039). Each case decodes one message of the shape the
pipeline carries (a `create` as bench.kafka_ingest produces it; a run request as the
dispatcher writes it; an http run's final status as the executor writes it)
ROUNDS times COUNT times, timed with `time.process_time` (CPU of this process only, so other
work on a shared box mostly stays out); the best and the median round are reported.

    .venv/bin/python -m bench.codec [--count 20000] [--against REV ...]

`--against REV` also measures the duetime/ and schemas/ of a git revision (in a child
process), so one run prints before and after.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench.revisions import add_revision_options, figures_per_column

ROUNDS = 7
CASES = ("JobCommand (create)", "RunRequested (http)", "RunStatusChanged (succeeded)")


def _messages() -> list[tuple[Callable[[bytes], Any], bytes]]:
    # Imported here so that --against measures the revision's copy.
    from duetime.timeutil import utcnow
    from schemas.events import JobCommand, RunRequested, RunStatusChanged

    now = utcnow()
    command = JobCommand.model_validate({
        "command_id": "9d1c6a0e4f0b4a8e9b1f2c3d4e5f6a7b", "type": "create",
        "job_id": "0b7e2f6c1d8a4e3f9a5b6c7d8e9f0a1b", "tenant": "ingest-1a2b3c4d",
        "issued_at": now, "spec": {
            "name": "bench-ingest", "schedule": {"type": "once", "at": now + timedelta(days=1)},
            "target": {"type": "http", "url": "http://127.0.0.1:9/never"}}})
    request = RunRequested.model_validate({
        "run_id": "0b7e2f6c1d8a4e3f9a5b6c7d8e9f0a1b:1764150000000", "tenant": "t1",
        "job_id": "0b7e2f6c1d8a4e3f9a5b6c7d8e9f0a1b", "job_version": 1, "scheduled_at": now,
        "due_at": now, "attempt": 1, "priority": 5, "retry": {}, "dispatched_at": now,
        "member": "0b7e2f6c1d8a4e3f9a5b6c7d8e9f0a1b|1|1764150000000|1|5|0",
        "target": {"type": "http", "url": "http://127.0.0.1:18999/hook",
                   "headers": {"X-Team": "ops"}, "body": {"job": "nightly", "n": [1, 2, 3]}}})
    status = RunStatusChanged.model_validate({
        "run_id": request.run_id, "job_id": request.job_id, "tenant": "t1", "scheduled_at": now,
        "attempt": 1, "status": "succeeded", "at": now, "queued_at": now, "started_at": now,
        "finished_at": now, "lateness_ms": 3, "duration_ms": 20, "http_status": 200,
        "executor_id": "executor-1"})
    # The bytes on the topics: the job service dumps the model, the dispatcher and the
    # executor leave out None.
    return [(JobCommand.model_validate_json, command.model_dump_json().encode()),
            (RunRequested.model_validate_json, request.model_dump_json(exclude_none=True).encode()),
            (RunStatusChanged.model_validate_json, status.model_dump_json(exclude_none=True).encode())]


def measure(count: int) -> list[list[float]]:
    """Per case, the CPU microseconds per message of each round."""
    figures = []
    for decode, raw in _messages():
        decode(raw)
        rounds = []
        for _ in range(ROUNDS):
            began = time.process_time()
            for _ in range(count):
                decode(raw)
            rounds.append(1e6 * (time.process_time() - began) / count)
        figures.append(rounds)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="messages per round")
    add_revision_options(parser)
    args = parser.parse_args()
    found = figures_per_column(args, "bench.codec", lambda: measure(args.count),
                               "--count", str(args.count))
    if found is None:
        return
    columns, rows = found
    print("| message | " + " | ".join(f"`{c}` µs CPU (best / median of {ROUNDS})"
                                      for c in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for i, case in enumerate(CASES):
        cells = " | ".join(f"{min(row[i]):.1f} / {statistics.median(row[i]):.1f}" for row in rows)
        print(f"| {case} | {cells} |")


if __name__ == "__main__":
    main()
