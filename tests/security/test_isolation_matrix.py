"""The tenant-isolation matrix (issue 7): every route of both APIs, enumerated from the apps
themselves, attacked three ways — tenant A with tenant B's ids through the gateway, forged tenant
headers and assertions through the gateway, and straight at the service ports — and B's jobs and
runs are compared before and after. A route added without a row in ROUTES fails the first test."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
import httpx
from fastapi import FastAPI
from starlette.routing import BaseRoute, Route

from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.tenant_assertion import TenantAssertions
from job_service.api import build_app as job_app
from search_service.api import build_app as search_app
from tests.security.conftest import ATTACKER, FAR_FUTURE, VICTIM, VictimJobs, snapshot
from tests.security.test_service_auth import untouched_after_a_marker
from tests.support.gateway import assertion_headers
from tests.support.jobs import Cleanup, get_job, http_job
from tests.support.problems import problem
from tests.support.waiting import eventually

SPEC = http_job("http://127.0.0.1:18999/isolation", FAR_FUTURE)


@dataclass(frozen=True)
class Row:
    kind: str  # "victim id": names one of B's jobs; "listing": B's data must not appear;
    # "create": makes a job, which must be A's; "open": ops endpoint, no tenant at all;
    # the dashboard's (ADR 0029) "page": an HTML page where B's data must not appear,
    # "page victim id": an HTML page naming one of B's jobs, "logout": its one form behind a key
    body: dict[str, Any] | None = None


ROUTES: dict[tuple[str, str, str], Row] = {
    ("job_service", "POST", "/jobs"): Row("create", SPEC),
    ("job_service", "POST", "/jobs:preview"): Row("create", SPEC),
    ("job_service", "POST", "/timers"): Row("create", {"seconds": 3600,
                                                         "url": "http://127.0.0.1:18999/t"}),
    ("job_service", "PUT", "/jobs/{job_id}"): Row("victim id", SPEC),
    ("job_service", "PATCH", "/jobs/{job_id}"): Row("victim id", {"name": "hijacked"}),
    ("job_service", "DELETE", "/jobs/{job_id}"): Row("victim id"),
    ("job_service", "POST", "/jobs/{job_id}/pause"): Row("victim id"),
    ("job_service", "POST", "/jobs/{job_id}/resume"): Row("victim id"),
    ("job_service", "POST", "/jobs/{job_id}/run"): Row("victim id"),
    ("job_service", "POST", "/jobs/{job_id}/runNow"): Row("victim id"),
    ("search_service", "GET", "/jobs"): Row("listing"),
    ("search_service", "GET", "/runs"): Row("listing"),
    ("search_service", "GET", "/alerts"): Row("listing"),
    ("search_service", "GET", "/stats"): Row("listing"),
    ("search_service", "GET", "/jobs/{job_id}"): Row("victim id"),
    ("search_service", "GET", "/jobs/{job_id}/status"): Row("victim id"),
    ("search_service", "GET", "/jobs/{job_id}/runs"): Row("victim id"),
    ("search_service", "GET", "/jobs/{job_id}/preview"): Row("victim id"),
    ("search_service", "GET", "/timers/{timer_id}"): Row("victim id"),
    # Named here by the victim's job id (no run of a far-future job exists); a real run of
    # another tenant's is refused in tests/e2e/test_apply.py.
    ("search_service", "GET", "/runs/{run_id}"): Row("victim id"),
    # The API's description and Swagger UI: no tenant's data, open like the ops endpoints
    # (ADR 0028; tests/e2e/test_api_docs.py).
    **{("search_service", "GET", path): Row("open")
       for path in ("/openapi.json", "/docs", "/docs/init.js", "/docs/{asset}")},
    # The dashboard: every page needs the assertion like the API (tests/ui); only its login
    # form and static files are open.
    **{("search_service", "GET", path): Row("page")
       for path in ("/ui", "/ui/", "/ui/jobs", "/ui/failures", "/ui/alerts", "/ui/overview",
                    "/ui/overview/live")},
    ("search_service", "GET", "/ui/jobs/{job_id}"): Row("page victim id"),
    ("search_service", "GET", "/ui/jobs/{job_id}/runs"): Row("page victim id"),
    ("search_service", "POST", "/ui/logout"): Row("logout"),
    ("search_service", "GET", "/ui/login"): Row("open"),
    ("search_service", "POST", "/ui/login"): Row("open"),
    ("search_service", "GET", "/ui/static/{asset}"): Row("open"),
    **{(service, "GET", path): Row("open") for service in ("job_service", "search_service")
       for path in ("/healthz", "/readyz", "/metrics")},
}


def _apps() -> dict[str, FastAPI]:
    """Both apps as the services build them; their routes are all this test needs from them."""
    ids, signer, unused = JobIds("x" * 16), TenantAssertions("x"), cast(Any, None)
    return {"job_service": job_app(Lifecycle("job_service"), unused, unused, unused, ids, signer),
            "search_service": search_app(Lifecycle("search_service"), unused, {}, ids, signer)}


def _walk(routes: list[BaseRoute], prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) of every route, looking inside included routers (FastAPI >= 0.16x keeps
    them as one entry each)."""
    found = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found += _walk(included.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        elif isinstance(route, Route):
            found += [(method, prefix + route.path) for method in route.methods or ()]
    return found


def every_route() -> list[tuple[str, str, str]]:
    return sorted((name, method, path) for name, app in _apps().items()
                  for method, path in _walk(app.routes) if method != "HEAD")


def test_every_route_of_both_apps_is_in_the_matrix() -> None:
    routes = every_route()
    unclassified = [r for r in routes if r not in ROUTES]
    assert not unclassified, f"add these routes to ROUTES (and so to the matrix): {unclassified}"
    assert not set(ROUTES) - set(routes), "ROUTES names routes the apps no longer have"


def _url(path: str, job_id: str) -> str:
    return path.replace("{job_id}", job_id).replace("{timer_id}", job_id).replace(
        "{run_id}", job_id)


def _bad_assertions(signer: TenantAssertions, method: str) -> list[dict[str, str]]:
    stale = int(time.time() * 1000) - 60_000
    return [{}, assertion_headers(TenantAssertions("forged-by-someone-without-the-secret"),
                                  VICTIM, method),
            assertion_headers(signer, VICTIM, method, at_ms=stale)]


async def test_straight_at_the_service_ports_every_route_is_401_without_a_valid_assertion(
    env: dict[str, str], gateway_signer: TenantAssertions, victim: VictimJobs,
    api_b: httpx.AsyncClient, pg: asyncpg.Pool[Any],
) -> None:
    before = await snapshot(pg, victim.ids)
    urls = {"job_service": env["DUETIME_JOB_SERVICE_URL"],
            "search_service": env["DUETIME_SEARCH_SERVICE_URL"]}
    checked = 0
    for (service, method, path), route in ROUTES.items():
        if route.kind == "open":
            continue
        async with httpx.AsyncClient(base_url=urls[service], timeout=30) as client:
            for job_id in victim.ids:
                for forged in _bad_assertions(gateway_signer, method):
                    headers = {"X-Duetime-Tenant": VICTIM, "X-Tenant": VICTIM, **forged}
                    resp = await client.request(method, _url(path, job_id), json=route.body,
                                                headers=headers)
                    problem(resp, 401)
                    assert not set(victim.ids) & set(resp.text.split('"')), (method, path)
                    checked += 1
    assert checked >= 17 * 2 * 3
    await untouched_after_a_marker(api_b, pg, victim, before)


async def test_through_the_gateway_a_tenant_never_reaches_another_tenants_jobs(
    api: httpx.AsyncClient, anonymous: httpx.AsyncClient, api_b: httpx.AsyncClient,
    gateway_signer: TenantAssertions, victim: VictimJobs, jobs: Cleanup, pg: asyncpg.Pool[Any],
) -> None:
    before = await snapshot(pg, victim.ids)
    for (_, method, path), route in ROUTES.items():
        if route.kind == "open":
            continue
        for job_id in victim.ids:
            url = _url(path, job_id)
            # Forged: B's name in headers, and an assertion for B signed with the real secret but
            # stale, or even fresh — the gateway replaces it with the caller's own.
            forged = {"X-Duetime-Tenant": VICTIM,
                      **assertion_headers(gateway_signer, VICTIM, method)}
            unauthenticated = await anonymous.request(method, url, json=route.body, headers=forged)
            if path.startswith("/ui"):
                # A browser without a session goes to the login page, not to a JSON 401.
                assert unauthenticated.status_code == 303, (method, path)
                assert unauthenticated.headers["location"].startswith("/ui/login?"), path
            else:
                problem(unauthenticated, 401)
            resp = await api.request(method, url, json=route.body, headers=forged)
            await _answered_as_the_attacker(route, resp, victim, jobs, api, pg)
    await untouched_after_a_marker(api_b, pg, victim, before)


async def _answered_as_the_attacker(route: Row, resp: httpx.Response, victim: VictimJobs,
                                    jobs: Cleanup, api: httpx.AsyncClient,
                                    pg: asyncpg.Pool[Any]) -> None:
    where = f"{resp.request.method} {resp.request.url.path}"
    if route.kind in ("page", "page victim id", "logout"):
        # "/ui" redirects to the jobs page; logout without its page's Origin is refused.
        expected = {"page": (200, 303), "page victim id": (404,), "logout": (403,)}[route.kind]
        assert resp.status_code in expected, (where, resp.status_code)
        assert not any(job_id in resp.text for job_id in victim.ids), where
        return
    if route.kind == "victim id":
        problem(resp, 404)
    else:
        assert resp.status_code < 300, (where, resp.text)
    assert not set(victim.ids) & set(resp.text.split('"')), where
    created = resp.json().get("job_id") or resp.json().get("id")
    if route.kind == "create" and created:
        jobs.track(api, created)
        await eventually(lambda: get_job(api, created), timeout=15)
        assert await pg.fetchval("SELECT tenant FROM jobs WHERE job_id = $1", created) == ATTACKER
