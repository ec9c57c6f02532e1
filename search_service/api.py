"""The read API (read-only; every query is scoped to the caller's tenant)."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, FastAPI, Path, Query, Request

from duetime.gateway_auth import GatewayAuthentication
from duetime.http_metrics import RequestMetrics
from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.ops import NO_TELEMETRY, ops_router
from duetime.problems import ProblemError, install, tenant_of
from duetime.tenant_assertion import TenantAssertions
from duetime.timeutil import utcnow
from schemas.events import RunStatus
from search_service.api_docs import docs_router
from search_service.filters import (
    AlertsQuery,
    JobsQuery,
    NoQuery,
    PreviewQuery,
    RunsQuery,
    openapi_parameters,
    parse_query,
)
from search_service.listing import (
    alerts_page,
    alerts_statement,
    jobs_page,
    jobs_statement,
    runs_page,
    runs_statement,
    stats_view,
    stats_windows,
)
from search_service.query_limits import DEFAULT_STATEMENT_TIMEOUT_MS
from search_service.query_limits import install as install_query_limits
from search_service.views import (
    decode_cursor,
    encode_cursor,
    job_view,
    preview_view,
    run_view,
)

# How long a read of a job we issued but the writer has not persisted yet waits for it
# before answering `state: "pending"` (ADR 0009).
WRITER_WAIT_SECONDS = 1.0
# Pauses between its looks: every 5 ms for the first 40 ms, when the writer stores nearly every
# job (5-25 ms after the 202), then every 20 ms, which bounds the queries one waiting read
# makes. Flat 20 ms pauses left a job stored at 21 ms unseen until 40 (bench.read_lag p95
# 46 ms with the writer's events lingering, 33 with these pauses, 20 without the linger).
WRITER_WAIT_PAUSES = (0.005,) * 8
WRITER_WAIT_PAUSE_AFTER = 0.02


def _not_found(kind: str, ident: str) -> ProblemError:
    return ProblemError(404, "Not found", f"no {kind} {ident}")


def pending_view(job_id: str) -> dict[str, Any]:
    return {"job_id": job_id, "state": "pending", "next_run_at": None}


class SearchRoutes:
    def __init__(self, pool: asyncpg.Pool[Any], queries: dict[str, str], ids: JobIds) -> None:
        self.pool, self.q, self.ids = pool, queries, ids

    async def find_job(self, request: Request, job_id: str,
                       query: str = "get_job") -> asyncpg.Record | None:
        """The job's row; None for a job issued to this tenant that the writer has not
        persisted yet (after waiting briefly for it); 404 for any other unknown id."""
        tenant = tenant_of(request)
        issued = self.ids.issued(tenant, job_id)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (WRITER_WAIT_SECONDS if issued else 0)
        pauses = iter(WRITER_WAIT_PAUSES)
        while True:
            row: asyncpg.Record | None = await self.pool.fetchrow(self.q[query], job_id, tenant)
            if row is not None:
                return row
            if loop.time() >= give_up:
                break
            await asyncio.sleep(next(pauses, WRITER_WAIT_PAUSE_AFTER))
        if issued:
            return None
        raise _not_found("job", job_id)

    async def job_row(self, request: Request, job_id: str) -> asyncpg.Record:
        row = await self.find_job(request, job_id)
        if row is None:
            raise ProblemError(404, "Not found", f"job {job_id} is accepted but not stored yet")
        return row

    async def get_job(self, request: Request, job_id: str) -> dict[str, Any]:
        row = await self.find_job(request, job_id)
        return pending_view(job_id) if row is None else job_view(row)

    async def job_status(self, request: Request, job_id: str) -> dict[str, Any]:
        row = await self.find_job(request, job_id)
        if row is None:
            return {**pending_view(job_id), "latest_run": None}
        view = job_view(row)
        latest = await self.pool.fetchrow(self.q["latest_run"], job_id, tenant_of(request))
        return {"job_id": job_id, "state": view["state"], "next_run_at": view["next_run_at"],
                "latest_run": None if latest is None else run_view(latest)}

    async def job_runs(
        self, request: Request, job_id: str,
        status: RunStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> dict[str, Any]:
        at, key = decode_cursor(cursor)
        if await self.find_job(request, job_id) is None:
            return {"items": [], "next_cursor": None}
        rows = await self.pool.fetch(self.q["job_runs_page"], job_id, tenant_of(request), status,
                                     at, key, limit + 1)
        items = [run_view(r) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = rows[limit - 1]
            nxt = encode_cursor(last["scheduled_at"], last["run_id"])
        return {"items": items, "next_cursor": nxt}

    async def get_run(self, request: Request,
                      run_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        row = await self.pool.fetchrow(self.q["run_by_id"], run_id, tenant_of(request))
        if row is None:
            raise _not_found("run", run_id)
        return run_view(row)

    async def job_preview(self, request: Request, job_id: str) -> dict[str, Any]:
        params = parse_query(PreviewQuery, request.query_params.multi_items())
        row = await self.job_row(request, job_id)
        # Up to 1000 cron matches is CPU work: keep it off the event loop.
        return await asyncio.to_thread(preview_view, row, utcnow(), params.count)

    async def list_jobs(self, request: Request) -> dict[str, Any]:
        params = parse_query(JobsQuery, request.query_params.multi_items())
        statement = jobs_statement(params, tenant_of(request))
        rows = await self.pool.fetch(self.q[statement.query], *statement.args)
        return jobs_page(rows, params)

    async def list_runs(self, request: Request) -> dict[str, Any]:
        params = parse_query(RunsQuery, request.query_params.multi_items())
        statement = runs_statement(params, tenant_of(request))
        rows = await self.pool.fetch(self.q[statement.query], *statement.args)
        return runs_page(rows, params)

    async def list_alerts(self, request: Request) -> dict[str, Any]:
        params = parse_query(AlertsQuery, request.query_params.multi_items())
        statement = alerts_statement(params, tenant_of(request))
        rows = await self.pool.fetch(self.q[statement.query], *statement.args)
        return alerts_page(rows, params)

    async def stats(self, request: Request) -> dict[str, Any]:
        parse_query(NoQuery, request.query_params.multi_items())
        tenant = tenant_of(request)
        hour_ago, day_ago = stats_windows(utcnow())
        jobs = await self.pool.fetch(self.q["job_counts"], tenant)
        runs = await self.pool.fetch(self.q["run_counts"], tenant, hour_ago, day_ago)
        metrics = await self.pool.fetchrow(self.q["run_metrics"], tenant, hour_ago, day_ago)
        assert metrics is not None  # an aggregate without GROUP BY always returns one row
        return stats_view(jobs, runs, metrics)

    async def get_timer(self, request: Request, timer_id: str) -> dict[str, Any]:
        row = await self.find_job(request, timer_id, "timer")
        if row is None:
            return {"id": timer_id, "time_left": None, "state": "pending"}
        due = row["next_run_at"]
        left = 0 if due is None else max(0, math.ceil((due - utcnow()).total_seconds()))
        return {"id": timer_id, "time_left": left, "state": row["state"]}

    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route("/jobs", self.list_jobs, methods=["GET"],
                        openapi_extra={"parameters": openapi_parameters(JobsQuery)})
        r.add_api_route("/jobs/{job_id}", self.get_job, methods=["GET"])
        r.add_api_route("/jobs/{job_id}/status", self.job_status, methods=["GET"])
        r.add_api_route("/jobs/{job_id}/runs", self.job_runs, methods=["GET"])
        r.add_api_route("/jobs/{job_id}/preview", self.job_preview, methods=["GET"],
                        openapi_extra={"parameters": openapi_parameters(PreviewQuery)})
        r.add_api_route("/runs", self.list_runs, methods=["GET"],
                        openapi_extra={"parameters": openapi_parameters(RunsQuery)})
        r.add_api_route("/runs/{run_id}", self.get_run, methods=["GET"])
        r.add_api_route("/alerts", self.list_alerts, methods=["GET"],
                        openapi_extra={"parameters": openapi_parameters(AlertsQuery)})
        r.add_api_route("/stats", self.stats, methods=["GET"])
        r.add_api_route("/timers/{timer_id}", self.get_timer, methods=["GET"])
        return r


def build_app(lifecycle: Lifecycle, pool: asyncpg.Pool[Any], q: dict[str, str],
              ids: JobIds, assertions: TenantAssertions,
              statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
              prometheus_url: str | None = None) -> FastAPI:
    """`statement_timeout_ms`: what `pool` was opened with, for the 422 that quotes it;
    `prometheus_url`: where the dashboard's overview reads installation-wide numbers (or none)."""
    # Imported here: the dashboard builds on SearchRoutes, defined above.
    from search_service.ui.prometheus import PrometheusReader
    from search_service.ui.routes import Dashboard

    # The API's document is both services' (schemas/openapi.json), served by docs_router.
    app = FastAPI(title="duetime search service", docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry=NO_TELEMETRY)
    install(app)
    app.add_middleware(GatewayAuthentication, assertions=assertions)
    # Outermost (added last): times every answer, the 401s of the line above included.
    app.add_middleware(RequestMetrics)
    install_query_limits(app, statement_timeout_ms)
    app.include_router(ops_router(lifecycle))
    search = SearchRoutes(pool, q, ids)
    app.include_router(search.router())
    app.include_router(docs_router())
    reader = PrometheusReader(prometheus_url) if prometheus_url else None
    app.include_router(Dashboard(search, pool, reader).router())
    return app
