"""Job counters under pause/resume, replays and skipped firings (issue 6 defect 8), in-process.

The writer, a dispatcher's pop and an executor run against the real backends on a due-set
prefix of their own (tests/support/pipeline.py); assertions are on the jobs rows, the due-set
and what the sink received. Skipped firings do not count toward max_runs (docs/guarantees.md).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg

from duetime.timeutil import now_ms
from tests.support.pipeline import Pipeline
from tests.support.sink import Sink
from writer.service import QUERIES as WRITER_QUERIES


def _at(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


async def _fire_everything_until(pipeline: Pipeline, until_ms: int) -> None:
    """Play dispatcher and executor until `until_ms`, then persist every status."""
    while now_ms() < until_ms:
        await pipeline.dispatch()
        await asyncio.sleep(0.05)
    await pipeline.settle()
    await pipeline.persist()


async def test_pause_and_resume_inside_the_load_window_lets_an_end_at_job_complete(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    start = now_ms()
    job_id = await pipeline.create({"type": "interval", "every_seconds": 1,
                                    "end_at": _at(start + 3500)}, sink.url(path))
    assert (await pipeline.job(job_id))["planned_count"] == 3  # all loaded: inside the window
    await pipeline.send(pipeline.command(job_id, "pause"), pipeline.command(job_id, "resume"))
    job = await pipeline.job(job_id)
    assert (job["state"], job["planned_count"]) == ("active", 3)  # counted once

    await _fire_everything_until(pipeline, start + 4000)
    assert len(sink.hits_for(path)) == 3
    job = await pipeline.job(job_id)
    assert (job["state"], job["run_count"]) == ("completed", 3)


async def test_a_max_runs_job_paused_across_a_firing_fires_max_runs_times(
    pipeline: Pipeline, sink: Sink, path: str,
) -> None:
    job_id = await pipeline.create({"type": "interval", "every_seconds": 1}, sink.url(path),
                                   max_runs=3)
    created = (await pipeline.job(job_id))["created_at"].timestamp() * 1000
    await pipeline.send(pipeline.command(job_id, "pause"))
    await _fire_everything_until(pipeline, int(created) + 1300)  # firing 1 is skipped: paused
    job = await pipeline.job(job_id)
    assert (job["state"], job["run_count"]) == ("paused", 0)  # neither counted nor completed
    assert sink.hits_for(path) == []

    await pipeline.send(pipeline.command(job_id, "resume"))
    await _fire_everything_until(pipeline, now_ms() + 3300)
    assert len(sink.hits_for(path)) == 3
    job = await pipeline.job(job_id)
    assert (job["state"], job["run_count"]) == ("completed", 3)
    skipped = [r for r in await pipeline.runs(job_id) if r["status"] == "skipped"]
    assert [(r["reason"], r["final"]) for r in skipped] == [("paused", False)]


async def test_a_replayed_command_applies_once(pipeline: Pipeline) -> None:
    job_id = await pipeline.create({"type": "once", "at": _at(now_ms() + 10_000)},
                                   "http://127.0.0.1:9/hook")
    patch = pipeline.command(job_id, "patch", patch={"name": "renamed"})
    pause = pipeline.command(job_id, "pause")
    resume = pipeline.command(job_id, "resume")
    await pipeline.send(patch, pause, resume)
    job = await pipeline.job(job_id)
    assert (job["version"], job["state"]) == (3, "active")  # the edit and the resume
    # The writer crashed before committing its offset: the whole batch comes again.
    await pipeline.send(patch, pause, resume)
    job = await pipeline.job(job_id)
    assert (job["version"], job["state"], job["name"]) == (3, "active", "renamed")
    assert max(e.version for e in await pipeline.members()) == 3  # no version loaded twice


async def test_remembered_command_ids_expire_after_their_retention(
    fresh_db: asyncpg.Pool[Any],
) -> None:
    await fresh_db.execute(
        "INSERT INTO applied_commands (command_id, job_id, applied_at) VALUES"
        " ('old', 'j', now() - interval '20 days'), ('new', 'j', now() - interval '1 day')")
    await fresh_db.execute(WRITER_QUERIES["expire_applied_commands"], 14)
    left = [r["command_id"] for r in await fresh_db.fetch("SELECT command_id FROM applied_commands")]
    assert left == ["new"]
