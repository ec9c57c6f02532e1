"""The dashboard at /ui (ADR 0029): server-rendered pages over the read API's own queries.

Every page but the login form and the static files needs the gateway's signed assertion
(duetime.gateway_auth), and every query is scoped to the asserted tenant: listings and single
jobs go through SearchRoutes and search_service/queries.sql, the aggregates through
search_service/ui/queries.sql, all with `tenant = $1`. Read-only: the only forms are login and
logout, checked for their origin (session.same_origin).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import asyncpg
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from duetime.problems import ProblemError, tenant_of
from duetime.sql import load_queries
from duetime.timeutil import utcnow
from schemas.events import ALERT_KINDS, JOB_STATES, RUN_STATUSES, alert_summary
from search_service.cursors import storable
from search_service.filters import AlertsQuery, JobsQuery, parse_query
from search_service.listing import alerts_page, alerts_statement, jobs_page, jobs_statement
from search_service.ui import charts, session
from search_service.ui.fire_times import fire_times
from search_service.ui.prometheus import PrometheusReader
from search_service.views import job_view, preview_view, run_view

if TYPE_CHECKING:
    from search_service.api import SearchRoutes

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}
ASSETS = {"ui.js": "text/javascript", "ui.css": "text/css"}
RUNS_SHOWN = 50
NEXT_FIRES = 10
WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
# The job filters the page offers as inputs: every parameter of GET /jobs (filters.JobsQuery).
TEXT_FILTERS = ("name", "next_run_after", "next_run_before", "created_after", "created_before")
CHOICE_FILTERS = {"state": JOB_STATES, "schedule_type": ("once", "delay", "now", "interval", "cron"),
                  "target_type": ("http", "kafka", "command", "steps")}
SORTS = ("created_at_desc", "created_at_asc", "next_run_at_asc", "name_asc")


def _filled(request: Request) -> list[tuple[str, str]]:
    """The query pairs a filter form sends, less its empty fields (an empty select is no filter)."""
    return [(k, v) for k, v in request.query_params.multi_items() if v != ""]


class Dashboard:
    def __init__(self, search: SearchRoutes, pool: asyncpg.Pool[Any],
                 prometheus: PrometheusReader | None) -> None:
        self.search, self.pool, self.prometheus = search, pool, prometheus
        self.q = load_queries("search_service.ui")
        self.templates = Environment(loader=PackageLoader("search_service.ui", "templates"),
                                     autoescape=select_autoescape(default=True),
                                     enable_async=False)

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def error(self, exc: ProblemError) -> HTMLResponse:
        return self.render("error.html", exc.status, title=exc.title, detail=exc.detail,
                           errors=exc.errors or [], page="")

    # ---- jobs ---------------------------------------------------------------------------

    async def jobs(self, request: Request) -> HTMLResponse:
        pairs = _filled(request)
        values = dict(pairs)
        labels = [v for k, v in pairs if k == "label"]
        context: dict[str, Any] = {
            "page": "jobs", "values": values, "labels": labels, "text_filters": TEXT_FILTERS,
            "choice_filters": CHOICE_FILTERS, "sorts": SORTS, "items": [], "errors": [],
            "next_url": None, "first_url": None}
        try:
            params = parse_query(JobsQuery, pairs)
            statement = jobs_statement(params, tenant_of(request))
            rows = await self.search.pool.fetch(self.search.q[statement.query], *statement.args)
        except ProblemError as exc:
            return self.render("jobs.html", exc.status, **{**context, "errors": exc.errors or []})
        listing = jobs_page(rows, params)
        kept = [(k, v) for k, v in pairs if k != "cursor"]
        if listing["next_cursor"]:
            context["next_url"] = "/ui/jobs?" + urlencode([*kept, ("cursor", listing["next_cursor"])])
        if params.cursor:
            context["first_url"] = "/ui/jobs?" + urlencode(kept)
        return self.render("jobs.html", **{**context, "items": listing["items"]})

    async def job(self, request: Request, job_id: str) -> HTMLResponse:
        try:
            run_status, row = await self._job_and_filter(request, job_id)
        except ProblemError as exc:
            return self.error(exc)
        if row is None:
            return self.render("pending.html", 200, page="jobs", job_id=job_id)
        now = utcnow()
        view = job_view(row)
        preview = await asyncio.to_thread(preview_view, row, now, NEXT_FIRES)
        schedule = view.get("schedule") or {}
        zone = schedule.get("timezone", "UTC") if schedule.get("type") == "cron" else "UTC"
        spec = {k: v for k, v in view.items() if k not in (
            "job_id", "state", "version", "next_run_at", "run_count", "failure_count", "last_run",
            "created_at", "updated_at")}
        runs = await self._runs(request, job_id, run_status)
        return self.render(
            "job.html", page="jobs", job=view, zone=zone, run_status=run_status,
            statuses=RUN_STATUSES, runs=runs, timeline=charts.runs_timeline(runs),
            fires=fire_times(preview["next_run_times"], zone, now),
            spec_json=orjson.dumps(spec, option=orjson.OPT_INDENT_2).decode(),
            runs_url=self._runs_url(job_id, run_status))

    async def job_runs(self, request: Request, job_id: str) -> HTMLResponse:
        try:
            run_status, row = await self._job_and_filter(request, job_id)
        except ProblemError as exc:
            return self.error(exc)
        runs = [] if row is None else await self._runs(request, job_id, run_status)
        return self.render("_runs.html", runs=runs, run_status=run_status,
                           timeline=charts.runs_timeline(runs))

    async def _job_and_filter(self, request: Request,
                              job_id: str) -> tuple[str | None, asyncpg.Record | None]:
        """The runs filter, checked first, and the job's row (None: accepted, not stored)."""
        run_status = self._run_status(request)
        return run_status, await self._row(request, job_id)

    @staticmethod
    def _runs_url(job_id: str, run_status: str | None) -> str:
        query = f"?{urlencode({'run_status': run_status})}" if run_status else ""
        return f"/ui/jobs/{job_id}/runs{query}"

    @staticmethod
    def _run_status(request: Request) -> str | None:
        pairs = _filled(request)
        unknown = sorted({k for k, _ in pairs} - {"run_status"})
        if unknown or len(pairs) > 1:
            raise ProblemError(422, "Invalid request", "only run_status can filter the runs",
                               [{"field": k[:64], "message": "unknown query parameter"}
                                for k in unknown])
        status = dict(pairs).get("run_status")
        if status is not None and status not in RUN_STATUSES:
            raise ProblemError(422, "Invalid request", "unknown run status",
                               [{"field": "run_status",
                                 "message": f"must be one of {', '.join(RUN_STATUSES)}"}])
        return status

    async def _row(self, request: Request, job_id: str) -> asyncpg.Record | None:
        # The same answer for an id that is malformed, unknown, or another tenant's; the page
        # does not echo the id back.
        not_found = ProblemError(404, "Not found", "There is no such job among yours.")
        if len(job_id) > 200 or not storable(job_id):
            raise not_found
        try:
            return await self.search.find_job(request, job_id)
        except ProblemError as exc:
            raise not_found from exc

    async def _runs(self, request: Request, job_id: str,
                    run_status: str | None) -> list[dict[str, Any]]:
        rows = await self.search.pool.fetch(self.search.q["job_runs_page"], job_id,
                                            tenant_of(request), run_status, None, None,
                                            RUNS_SHOWN)
        return [run_view(r) for r in rows]

    # ---- failures and overview ------------------------------------------------------------

    async def failures(self, request: Request) -> HTMLResponse:
        pairs = _filled(request)
        window = dict(pairs).get("window", "hour")
        if window not in WINDOWS or len(pairs) > 1 or any(k != "window" for k, _ in pairs):
            return self.error(ProblemError(422, "Invalid request", "window is hour or day",
                                           [{"field": "window", "message": "hour or day"}]))
        rows = await self.pool.fetch(self.q["failures"], tenant_of(request),
                                     utcnow() - WINDOWS[window])
        return self.render("failures.html", page="failures", window=window, groups=rows,
                           total=sum(r["n"] for r in rows))

    async def alerts(self, request: Request) -> HTMLResponse:
        """The tenant's alerts, newest first, a page of GET /alerts at a time."""
        pairs = _filled(request)
        try:
            params = parse_query(AlertsQuery, pairs)
            statement = alerts_statement(params, tenant_of(request))
            rows = await self.search.pool.fetch(self.search.q[statement.query], *statement.args)
        except ProblemError as exc:
            return self.error(exc)
        listing = alerts_page(rows, params)
        kept = [(k, v) for k, v in pairs if k != "cursor"]
        next_url = None
        if listing["next_cursor"]:
            next_url = "/ui/alerts?" + urlencode([*kept, ("cursor", listing["next_cursor"])])
        return self.render("alerts.html", page="alerts", items=listing["items"],
                           kind=params.kind, kinds=ALERT_KINDS, next_url=next_url,
                           detail=alert_summary)

    async def overview(self, request: Request) -> HTMLResponse:
        return self.render("overview.html", page="overview", **await self._live(request))

    async def overview_live(self, request: Request) -> HTMLResponse:
        return self.render("_overview_live.html", **await self._live(request))

    async def _live(self, request: Request) -> dict[str, Any]:
        if request.query_params:
            raise ProblemError(422, "Invalid request", "this page takes no query parameters")
        tenant, now = tenant_of(request), utcnow()
        start = (now - timedelta(hours=1)).replace(second=0, microsecond=0)
        stats, histogram, firings, readings = await asyncio.gather(
            self.search.stats(request),
            self.pool.fetch(self.q["lateness_histogram"], tenant, now - timedelta(hours=1),
                            [float(b) for b in charts.LATENESS_BOUNDS_MS]),
            self.pool.fetch(self.q["firings_per_minute"], tenant, start),
            self.prometheus.read() if self.prometheus else _nothing())
        return {"stats": stats, "lateness": charts.lateness_histogram(histogram),
                "firings": charts.firings_over_time(firings, start, 61),
                "prometheus_configured": self.prometheus is not None, "readings": readings,
                "updated": now.strftime("%H:%M:%S UTC")}

    # ---- session ----------------------------------------------------------------------------

    async def login_page(self, request: Request) -> HTMLResponse:
        rejected = request.query_params.get("rejected") is not None
        message = "That key was not accepted (unknown or revoked): log in again." if rejected else None
        return self.render("login.html", page="login", error=message,
                           next=session.safe_next(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        if not session.same_origin(request):
            return self.render("login.html", 403, page="login", next=session.HOME,
                               error="This form must be sent from this site's own login page.")
        form: dict[str, str] = {}
        try:
            form = session.parse_form(await request.body())
            key = session.checked_key(form)
        except session.LoginRefused as exc:
            return self.render("login.html", 400, page="login", error=str(exc),
                               next=session.safe_next(form.get("next")))
        response = RedirectResponse(session.safe_next(form.get("next")), status_code=303,
                                    headers=HEADERS)
        session.start(response, request, key)
        return response

    async def logout(self, request: Request) -> Response:
        if not session.same_origin(request):
            return self.error(ProblemError(403, "Forbidden",
                                           "log out from the dashboard's own button"))
        response = RedirectResponse("/ui/login", status_code=303, headers=HEADERS)
        session.end(response, request)
        return response

    async def home(self) -> Response:
        return RedirectResponse(session.HOME, status_code=303, headers=HEADERS)

    async def asset(self, asset: str) -> Response:
        if asset not in ASSETS:
            raise ProblemError(404, "Not found", f"no asset {asset[:64]}")
        body = resources.files("search_service.ui").joinpath("static", asset).read_bytes()
        return Response(body, media_type=ASSETS[asset],
                        headers={**HEADERS, "Cache-Control": "no-cache"})

    def router(self) -> APIRouter:
        r = APIRouter(include_in_schema=False)
        r.add_api_route("/ui", self.home, methods=["GET"])
        r.add_api_route("/ui/", self.home, methods=["GET"])
        r.add_api_route("/ui/jobs", self.jobs, methods=["GET"])
        r.add_api_route("/ui/jobs/{job_id}", self.job, methods=["GET"])
        r.add_api_route("/ui/jobs/{job_id}/runs", self.job_runs, methods=["GET"])
        r.add_api_route("/ui/failures", self.failures, methods=["GET"])
        r.add_api_route("/ui/alerts", self.alerts, methods=["GET"])
        r.add_api_route("/ui/overview", self.overview, methods=["GET"])
        r.add_api_route("/ui/overview/live", self.overview_live, methods=["GET"])
        r.add_api_route("/ui/login", self.login_page, methods=["GET"])
        r.add_api_route("/ui/login", self.login, methods=["POST"])
        r.add_api_route("/ui/logout", self.logout, methods=["POST"])
        r.add_api_route("/ui/static/{asset}", self.asset, methods=["GET"])
        return r


async def _nothing() -> None:
    return None
