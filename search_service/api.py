"""The read API (read-only; every query is scoped to the caller's tenant)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, FastAPI, Query, Request

from duetime.lifecycle import Lifecycle
from duetime.ops import ops_router
from duetime.problems import ProblemError, install, tenant_of
from duetime.timeutil import utcnow
from search_service.views import decode_cursor, encode_cursor, job_view, run_view

RunStatusFilter = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out",
                          "skipped"]


def _not_found(kind: str, ident: str) -> ProblemError:
    return ProblemError(404, "Not found", f"no {kind} {ident}")


def build_app(lifecycle: Lifecycle, pool: asyncpg.Pool[Any], q: dict[str, str]) -> FastAPI:
    app = FastAPI(title="duetime search service", docs_url=None, redoc_url=None)
    install(app)
    app.include_router(ops_router(lifecycle))
    router = APIRouter()

    @router.get("/jobs/{job_id}")
    async def get_job(request: Request, job_id: str) -> dict[str, Any]:
        row = await pool.fetchrow(q["get_job"], job_id, tenant_of(request))
        if row is None:
            raise _not_found("job", job_id)
        return job_view(row)

    @router.get("/jobs/{job_id}/status")
    async def job_status(request: Request, job_id: str) -> dict[str, Any]:
        tenant = tenant_of(request)
        row = await pool.fetchrow(q["get_job"], job_id, tenant)
        if row is None:
            raise _not_found("job", job_id)
        latest = await pool.fetchrow(q["latest_run"], job_id, tenant)
        view = job_view(row)
        return {"job_id": job_id, "state": view["state"], "next_run_at": view["next_run_at"],
                "latest_run": None if latest is None else run_view(latest)}

    @router.get("/jobs/{job_id}/runs")
    async def job_runs(
        request: Request, job_id: str,
        status: RunStatusFilter | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> dict[str, Any]:
        tenant = tenant_of(request)
        if await pool.fetchrow(q["get_job"], job_id, tenant) is None:
            raise _not_found("job", job_id)
        at, key = decode_cursor(cursor)
        rows = await pool.fetch(q["job_runs_page"], job_id, tenant, status, at, key, limit + 1)
        items = [run_view(r) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]
            nxt = encode_cursor(last["scheduled_at"], last["run_id"])
        return {"items": items, "next_cursor": nxt}

    @router.get("/timers/{timer_id}")
    async def get_timer(request: Request, timer_id: str) -> dict[str, Any]:
        row = await pool.fetchrow(q["timer"], timer_id, tenant_of(request))
        if row is None:
            raise _not_found("timer", timer_id)
        due = row["next_run_at"]
        left = 0 if due is None else max(0, math.ceil((due - utcnow()).total_seconds()))
        return {"id": timer_id, "time_left": left, "state": row["state"]}

    app.include_router(router)
    return app
