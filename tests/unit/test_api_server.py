"""What every service's HTTP server skips per request (duetime/ops.py): FastAPI's OpenTelemetry
hooks and uvicorn's proxy-header rewriting. Both cost CPU on every request and serve nothing
here (docs/benchmarks.md, "API servers without per-request extras"). And how long it keeps an
idle connection against the gateways' upstream keep-alive (ADR 0057)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry import _logs, metrics, trace

from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.ops import ops_app, serve, server_config
from duetime.tenant_assertion import TenantAssertions
from job_service.api import build_app as job_app
from search_service.api import build_app as search_app
from search_service.service import QUERIES
from tests.support.gateway import AsTenant
from tests.support.stack import ROOT
from tests.unit.test_job_service_validation import Published, Reserved

ASSERTIONS = TenantAssertions("unit-test-gateway-secret")
IDS = JobIds("unit-test-secret")


@pytest.fixture
def provider_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """How often anything asked OpenTelemetry for its global providers."""
    seen: Counter[str] = Counter()

    def counting(name: str, real: Callable[[], Any]) -> Callable[[], Any]:
        def lookup() -> Any:
            seen[name] += 1
            return real()
        return lookup

    for module, name in ((trace, "get_tracer_provider"), (metrics, "get_meter_provider"),
                         (_logs, "get_logger_provider")):
        monkeypatch.setattr(module, name, counting(name, getattr(module, name)))
    yield seen


def _apps() -> dict[str, FastAPI]:
    async def no_job(_: str) -> None:
        return None

    # The search service's routes below touch no database: its pool is never used.
    return {"ops": ops_app(Lifecycle("writer")),
            "job service": job_app(Lifecycle("job_service"), Published(), Reserved(), no_job,
                                   IDS, ASSERTIONS),
            "search service": search_app(Lifecycle("search_service"), None,  # type: ignore[arg-type]
                                         QUERIES, IDS, ASSERTIONS)}


async def test_no_request_looks_up_telemetry_providers(provider_lookups: Counter[str]) -> None:
    for name, app in _apps().items():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                     auth=AsTenant(ASSERTIONS, "tenant-a")) as client:
            assert (await client.get("/healthz")).status_code == 200, name
            # Authenticated, then no route matches: the API's middleware stack and router run.
            if name != "ops":
                assert (await client.get("/nowhere")).status_code == 404, name
        assert not provider_lookups, (name, provider_lookups)


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_server_leaves_client_and_scheme_as_they_came() -> None:
    app = FastAPI()

    @app.get("/who")
    async def who(request: Request) -> dict[str, Any]:
        assert request.client is not None
        return {"client": request.client.host, "scheme": request.url.scheme}

    lifecycle, port = Lifecycle("unit"), _free_port()
    server = asyncio.create_task(serve(app, "127.0.0.1", port, lifecycle))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(100):
                with contextlib.suppress(httpx.ConnectError):
                    resp = await client.get("/who", headers={
                        "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
                    break
                await asyncio.sleep(0.05)
        assert resp.json() == {"client": "127.0.0.1", "scheme": "http"}
    finally:
        lifecycle.stop.set()
        await asyncio.wait_for(server, 15)


GATEWAY_CONFIGS = ("deploy/local/nginx.conf.template", "deploy/compose/nginx.conf",
                   "deploy/k8s/base/gateway/nginx.conf")


def _upstreams(text: str) -> dict[str, str]:
    return dict(re.findall(r"upstream (\w+) \{(.*?)\n    \}", text, re.S))


@pytest.mark.parametrize("path", GATEWAY_CONFIGS)
def test_the_gateway_closes_idle_upstream_connections_before_the_services_do(path: str) -> None:
    """Each gateway keeps more idle connections per service than a pool of 64 clients has in
    flight (fewer, and the rest open a connection per request), and drops them before the
    service's own keep-alive ends (else a request can go out on a connection being closed)."""
    served = server_config(FastAPI(), "127.0.0.1", 0).timeout_keep_alive
    upstreams = _upstreams((ROOT / path).read_text())
    assert set(upstreams) == {"job_service", "search_service"}, upstreams
    for name, block in upstreams.items():
        idle = re.search(r"^\s*keepalive (\d+);", block, re.M)
        timeout = re.search(r"^\s*keepalive_timeout (\d+)s;", block, re.M)
        assert idle and int(idle.group(1)) >= 128, (path, name)
        assert timeout and int(timeout.group(1)) < served, (path, name, served)
