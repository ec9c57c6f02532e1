"""Run identity through the real pipeline (issue 6 defect 3): an edit that lands between the
dispatcher's pop (the due instant minus its lookahead) and the executor's start check wins,
and the instant still fires once, under the run id it always had."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx

from dispatcher.service import Settings as DispatcherSettings
from duetime.run_ids import run_id_for
from schemas.topics import JOB_EVENTS
from tests.support.jobs import create, http_job, wait_state
from tests.support.kafka import find_messages, kafka_settings
from tests.support.sink import Sink

LOOKAHEAD_S = DispatcherSettings.model_fields["lookahead_ms"].default / 1000


async def _applied_at(env: dict[str, str], job_id: str) -> float:
    """When the writer applied the job's edit (its job.updated event)."""
    [event] = await find_messages(kafka_settings(env), JOB_EVENTS,
                                  lambda m: m.get("job_id") == job_id
                                  and m.get("type") == "job.updated")
    return datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()


async def _edit_at(api: httpx.AsyncClient, sink: Sink, path: str,
                   before_due_s: float) -> tuple[str, int]:
    due_ms = time.time_ns() // 1_000_000 + 3000
    job_id = await create(api, http_job(sink.url(path + "/old"), {
        "type": "once", "at": datetime.fromtimestamp(due_ms / 1000, UTC).isoformat()}))
    await asyncio.sleep(max(0.0, due_ms / 1000 - time.time() - before_due_s))
    resp = await api.patch(f"/jobs/{job_id}", json={"target": {"url": sink.url(path + "/new")}})
    assert resp.status_code == 202
    return job_id, due_ms


async def test_edit_just_before_due_still_wins(api: httpx.AsyncClient, sink: Sink, path: str,
                                               env: dict[str, str]) -> None:
    """The PATCH is sent ~80 ms before the due instant, so the writer applies it inside the
    lookahead (checked from its job.updated event; a try the machine made land outside is
    repeated, at most five times)."""
    for attempt in range(5):
        tried = f"{path}/{attempt}"
        job_id, due = await _edit_at(api, sink, tried, before_due_s=0.08)
        applied = await _applied_at(env, job_id)
        await wait_state(api, job_id, "completed", timeout=15)
        await asyncio.sleep(0.5)  # a second firing, if any, would arrive by now
        hits = sink.hits_for(tried + "/old") + sink.hits_for(tried + "/new")
        assert len(hits) == 1, hits  # the instant fires exactly once, whichever version
        assert hits[0].headers["Idempotency-Key"] == run_id_for(job_id, due)
        if due / 1000 - LOOKAHEAD_S < applied < due / 1000:
            assert hits[0].path == tried + "/new"  # the edit won
            return
    raise AssertionError("no edit landed inside the lookahead in five tries")
