"""Hole 2, SSRF with read-back: a job aimed at the stack's own services, the cloud metadata
address, private networks or loopback in any spelling is refused by the executor's egress
policy — recorded as failed "blocked by egress policy", never retried, nothing reached, no
answer stored. Before, such a job read another tenant's jobs back through `response_excerpt`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from schemas.api import RESPONSE_EXCERPT_BYTES
from tests.support.jobs import Cleanup, http_job, wait_runs, wait_state
from tests.support.sink import SINK_PORTS, Sink, start_site

# Loopback ports the local stack's egress allowlist does not admit (just below the sinks').
OUTSIDE_PORTS = range(18800, 18900)
# The stack's own services, on the ports stack.sh gave them (a helper's stack moves them).
SEARCH_SERVICE = f"http://127.0.0.1:{os.environ.get('DUETIME_SEARCH_SERVICE_PORT', '18102')}"
JOB_SERVICE = f"http://127.0.0.1:{os.environ.get('DUETIME_JOB_SERVICE_PORT', '18101')}"


@pytest.fixture
async def outside() -> AsyncIterator[Sink]:
    """A sink listening where webhooks may not go: it must never be reached."""
    sink = await Sink(ports=OUTSIDE_PORTS).start()
    yield sink
    await sink.stop()


@pytest.fixture
async def ipv6_sink() -> AsyncIterator[Sink]:
    """A sink on [::1], on a port the allowlist admits for 127.0.0.1 only."""
    sink = await Sink(host="::1").start()
    yield sink
    await sink.stop()


def _blocked_job(url: str, **target: Any) -> dict[str, Any]:
    spec = http_job(url, {"type": "now"},
                    retry={"max_attempts": 3, "initial_delay_seconds": 1, "jitter": False})
    # Even a job that opts into excerpts gets none back from a blocked call.
    spec["target"].update(store_response=True, **target)
    return spec


async def _assert_blocked(api: httpx.AsyncClient, job_id: str, why: str) -> None:
    run = (await wait_runs(api, job_id, "failed", timeout=20))[0]
    assert run["error"] == f"blocked by egress policy: {why}", run
    assert run["attempt"] == 1 and run["http_status"] is None
    assert run["response_excerpt"] is None
    # The one-shot job is over after its first attempt: no retry is pending.
    job = await wait_state(api, job_id, "completed", timeout=10)
    assert job["failure_count"] == 1
    assert [r["attempt"] for r in await _all_runs(api, job_id)] == [1]


async def _all_runs(api: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    resp = await api.get(f"/jobs/{job_id}/runs", params={"limit": 500})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def test_a_job_cannot_read_another_tenant_through_the_search_service(
    api: httpx.AsyncClient, api_b: httpx.AsyncClient, jobs: Cleanup, sink: Sink, path: str,
) -> None:
    victim = await jobs.create(api_b, http_job(sink.url(path), {"type": "once",
                                                               "at": "2099-01-01T00:00:00Z"}))
    url = f"{SEARCH_SERVICE}/jobs/{victim}"
    # The header the gateway sets is refused outright (hole 4)...
    forged = _blocked_job(url, method="GET", headers={"X-Duetime-Tenant": "tenant-b"})
    resp = await api.post("/jobs", json=forged)
    assert resp.status_code == 422, resp.text
    # ...and the service itself is out of reach whatever the job sends.
    job_id = await jobs.create(api, _blocked_job(url, method="GET"))
    await _assert_blocked(api, job_id, "loopback address")


@pytest.mark.parametrize(("url", "why"), [
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "link-local address"),
    ("http://10.0.0.1/", "private address"),
    ("http://100.64.0.1/", "shared address space (CGNAT)"),
    ("http://127.0.0.1:18080/jobs", "loopback address"),  # the gateway
    (f"{JOB_SERVICE}/jobs", "loopback address"),
    ("http://127.0.0.1:16379/", "loopback address"),  # Redis
])
async def test_internal_addresses_are_blocked(api: httpx.AsyncClient, jobs: Cleanup,
                                              url: str, why: str) -> None:
    await _assert_blocked(api, await jobs.create(api, _blocked_job(url)), why)


async def test_loopback_in_every_spelling_is_blocked_and_never_reached(
    api: httpx.AsyncClient, jobs: Cleanup, outside: Sink, ipv6_sink: Sink, path: str,
) -> None:
    port = outside.port
    cases = {
        f"http://[::1]:{ipv6_sink.port}{path}": "loopback address",
        f"http://[::ffff:127.0.0.1]:{port}{path}": "loopback address",
        f"http://localhost:{port}{path}": "loopback address",
        f"http://0x7f.1:{port}{path}": "loopback address",  # hex: resolved by the OS
        f"http://127.0.0.1:{port}{path}": "loopback address",
        # Forms aiohttp never sends to a resolver: judged as the address they denote...
        f"http://2130706433:{port}{path}": "loopback address",
        f"http://0177.0.0.1:{port}{path}": "loopback address",
        f"http://127.1:{port}{path}": "loopback address",
        "http://2130706433/": "loopback address",
        # ...and refused as ambiguous even where the dotted form would be allowed.
        f"http://2130706433:{ipv6_sink.port}{path}": "numeric host not in dotted-quad form",
    }
    created = await asyncio.gather(*(jobs.create(api, _blocked_job(url)) for url in cases))
    await asyncio.gather(*(_assert_blocked(api, job_id, why)
                           for job_id, why in zip(created, cases.values(), strict=True)))
    assert outside.hits == [] and ipv6_sink.hits == []


async def test_an_allowed_port_is_reached_and_its_neighbour_is_not(
    api: httpx.AsyncClient, jobs: Cleanup, path: str,
) -> None:
    inside, beside = await _neighbours()
    try:
        ok = await jobs.create(api, _blocked_job(inside.url(path)))
        refused = await jobs.create(api, _blocked_job(beside.url(path)))
        await _assert_blocked(api, refused, "loopback address")
        assert (await wait_runs(api, ok, "succeeded"))[0]["response_excerpt"] == "ok"
        assert len(inside.hits_for(path)) == 1 and beside.hits == []
    finally:
        await inside.stop()
        await beside.stop()


# The first port of each range the stack allows (tests' sinks, benchmarks' sinks) and the one
# before it. The last allowed port, NOTHING_LISTENS, is never bound: other tests count on
# nothing answering there.
EDGES = [(SINK_PORTS.start, SINK_PORTS.start - 1), (28000, 27999)]


async def _neighbours() -> tuple[Sink, Sink]:
    """Sinks on an allowed range's first port and the one before it. Another test's sink may
    hold 18900 (any test's) or 18899 (the sandbox's outside ports) for a while, so the
    benchmarks' range, which no test binds, is the other choice; both tried for a few seconds."""
    for _ in range(50):
        for inside, beside in EDGES:
            try:
                a = await Sink(ports=range(inside, inside + 1)).start()
            except RuntimeError:
                continue
            try:
                return a, await Sink(ports=range(beside, beside + 1)).start()
            except RuntimeError:
                await a.stop()
        await asyncio.sleep(0.2)
    pytest.fail("the edge ports of both allowed ranges stayed taken")


async def test_a_redirect_to_a_blocked_address_is_not_followed(
    api: httpx.AsyncClient, jobs: Cleanup, outside: Sink, path: str,
) -> None:
    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://127.0.0.1:{outside.port}{path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = await start_site(runner)
    try:
        job_id = await jobs.create(api, http_job(f"http://127.0.0.1:{port}{path}", {"type": "now"},
                                                 retry={"max_attempts": 1}))
        run = (await wait_runs(api, job_id, "failed"))[0]
        assert (run["http_status"], run["error"]) == (302, "HTTP 302")
        await asyncio.sleep(0.5)  # a followed redirect would land right after the 302
        assert outside.hits == []
    finally:
        await runner.cleanup()


async def test_excerpts_are_opt_in_and_bounded(api: httpx.AsyncClient, jobs: Cleanup,
                                               make_sink: Callable[..., Awaitable[Sink]],
                                               path: str) -> None:
    long_answer = "x" * (3 * RESPONSE_EXCERPT_BYTES)
    sink = await make_sink(answer_for=lambda _: long_answer)
    default = await jobs.create(api, http_job(sink.url(path), {"type": "now"}))
    opted_in = http_job(sink.url(path), {"type": "now"})
    opted_in["target"]["store_response"] = True
    stored = await jobs.create(api, opted_in)
    assert (await wait_runs(api, default, "succeeded"))[0]["response_excerpt"] is None
    excerpt = (await wait_runs(api, stored, "succeeded"))[0]["response_excerpt"]
    assert excerpt == long_answer[:RESPONSE_EXCERPT_BYTES]
    not_a_flag = http_job(sink.url(path), {"type": "now"})
    not_a_flag["target"]["store_response"] = 4096
    resp = await api.post("/jobs", json=not_a_flag)
    assert resp.status_code == 422, resp.text
    assert [e["field"] for e in resp.json()["errors"]] == ["target.store_response"]
