"""The overview says where its numbers come from, and survives Prometheus being away: the search
service in process over the stack's Postgres, with the stack's Prometheus, with one that does
not answer, and with none configured."""

from __future__ import annotations

import socket

import httpx
import pytest

from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.tenant_assertion import TenantAssertions
from search_service.api import build_app
from search_service.service import QUERIES, Settings, read_pool
from tests.support.gateway import AsTenant


def _closed_port() -> int:
    with socket.socket() as s:  # free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def _overview(env: dict[str, str], prometheus_url: str | None) -> str:
    settings = Settings(postgres_dsn=env["DUETIME_POSTGRES_DSN"], postgres_pool_max=2)
    assertions = TenantAssertions("overview-test-gateway-secret-0123456789abcdef")
    async with read_pool(settings) as pool:
        app = build_app(Lifecycle("search_service"), pool, QUERIES, JobIds("overview-secret"),
                        assertions, prometheus_url=prometheus_url)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ss",
                                     auth=AsTenant(assertions, "overview-reader")) as client:
            resp = await client.get("/ui/overview/live")
    assert resp.status_code == 200, resp.text
    return resp.text


@pytest.fixture
def prometheus(env: dict[str, str]) -> str:
    url = env.get("DUETIME_PROMETHEUS_URL")
    if not url or httpx.get(f"{url}/-/ready", timeout=5).status_code != 200:
        pytest.fail("the stack's Prometheus is not running (make up starts it)")
    return url


async def test_with_prometheus_both_sources_are_shown_and_named(
    env: dict[str, str], prometheus: str,
) -> None:
    page = await _overview(env, prometheus)
    assert "From your own runs in Postgres" in page
    assert "From Prometheus (all tenants together" in page
    assert "Due-set depth" in page and "Consumer lag" in page


@pytest.mark.parametrize(("url", "says"), [
    (None, "Prometheus is not configured"),
    ("closed", "Prometheus did not answer"),
])
async def test_without_prometheus_the_tenants_numbers_still_show(
    env: dict[str, str], url: str | None, says: str,
) -> None:
    target = f"http://127.0.0.1:{_closed_port()}" if url == "closed" else url
    page = await _overview(env, target)
    assert says in page
    assert "From your own runs in Postgres" in page and "Due-set depth" not in page
