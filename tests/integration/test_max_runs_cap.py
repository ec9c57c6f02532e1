"""The watcher passes over a job at its max_runs cap until a planned firing is skipped for good
(issue 6 defect 8): then the job is due for loading again and its next firing replaces it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from duetime.timeutil import utcnow
from watcher.service import QUERIES

SPEC = {"name": "m", "schedule": {"type": "interval", "every_seconds": 1}, "max_runs": 3,
        "target": {"type": "http", "url": "http://127.0.0.1:9/x"}}


async def test_a_capped_job_is_loaded_again_once_a_planned_firing_is_skipped(
    fresh_db: asyncpg.Pool[Any],
) -> None:
    job_id, now = uuid.uuid4().hex, utcnow()
    await fresh_db.execute(
        "INSERT INTO jobs (job_id, tenant, name, spec, schedule_type, target_type, state,"
        " next_run_at, enqueue_at, planned_count, created_command, created_at, updated_at)"
        " VALUES ($1, 'dev', 'm', $2, 'interval', 'http', 'active', $3, $3, 3, 'c', $4, $4)",
        job_id, SPEC, now, now - timedelta(seconds=1))

    async def due_for_loading() -> list[str]:
        rows = await fresh_db.fetch(QUERIES["claim_due_jobs"], now + timedelta(seconds=20), 100)
        return [r["job_id"] for r in rows]

    assert await due_for_loading() == []  # 3 of 3 planned: nothing to load
    await fresh_db.execute("UPDATE jobs SET planned_count = 2 WHERE job_id = $1", job_id)
    assert await due_for_loading() == [job_id]  # one skipped for good: load its replacement
