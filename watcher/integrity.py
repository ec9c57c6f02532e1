"""Keeps the due-set a faithful index of Postgres (ADR 0014).

Postgres is the durable record of every pending firing (`jobs.next_run_at`) and every pending
retry (`job_runs.retry_at`); Redis is an index of it that can lose data — all of it (a flush, a
new empty server) or only its tail (an AOF `everysec` crash, a failover to a replica that had not
received the last writes). Either way the Redis server is not the one the due-set was last known
complete on: its epoch marker is gone, or its run id changed. The watcher then rebuilds: every
active job's pending firings are loaded again (ZADD NX: what survived is untouched) and every
pending retry is re-created. Done flags lost with the data can let a run that already fired fire
again, with the same Idempotency-Key: the README's "or Redis loses its data".
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from prometheus_client import Counter

from duetime.due_set import DueSet, Entry
from duetime.loading import run_template
from duetime.timeutil import to_ms, utcnow
from schemas.api import JobSpec

log = logging.getLogger(__name__)
REBUILDS = Counter("duetime_due_set_rebuilds_total", "Due-set rebuilds from Postgres", ["reason"])


class Integrity:
    def __init__(self, pool: asyncpg.Pool[Any], due_set: DueSet, queries: dict[str, str]) -> None:
        self.pool, self.due_set, self.q = pool, due_set, queries
        self.trusted: str | None = None  # the Redis run id this process saw intact

    async def ensure(self) -> str | None:
        """Rebuild the due-set if Redis is not the server it was known complete on; returns
        why it rebuilt, or None. One INFO and one EXISTS per call when nothing changed."""
        run_id, marked = await self.due_set.identity()
        if marked and run_id == self.trusted:
            return None
        known = await self.pool.fetchval(self.q["due_set_state"])
        if marked and known in (run_id, None):
            # Intact (or the first watcher ever on this database, with nothing to compare).
            await self._trust(run_id)
            return None
        reason = "flushed" if not marked else "restarted or failed over"
        retries = await self.rebuild()
        await self.due_set.mark_epoch(utcnow().isoformat())
        await self._trust(run_id)
        REBUILDS.labels(reason).inc()
        log.warning("due-set rebuilt from Postgres",
                    extra={"reason": reason, "redis_run_id": run_id, "retries": retries})
        return reason

    async def _trust(self, run_id: str) -> None:
        await self.pool.execute(self.q["record_due_set_state"], run_id)
        self.trusted = run_id

    async def rebuild(self) -> int:
        """Reload every pending firing and re-create every pending retry; returns the retries."""
        await self.pool.execute(self.q["reload_everything"])
        rows = await self.pool.fetch(self.q["pending_retries"])
        for row in rows:
            spec = JobSpec.model_validate(row["spec"])
            entry = Entry(row["job_id"], row["version"], to_ms(row["scheduled_at"]),
                          row["attempt"] + 1, spec.priority)
            await self.due_set.load(row["job_id"], row["version"], "active",
                                    run_template(row["job_id"], row["tenant"], row["version"],
                                                 spec), [])
            await self.due_set.add_due([(entry, to_ms(row["retry_at"]))])
        return len(rows)
