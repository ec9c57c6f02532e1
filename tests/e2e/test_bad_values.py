"""Values that once stopped every write, through the gateway (issue 6, defect 1).

What can never be stored is refused with a 422 naming the field; what is valid but extreme (a
`once.at` decades ago, a webhook answering binary) fires, is recorded, and the pipeline goes on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web

from tests.support.jobs import create, http_job, wait_runs
from tests.support.sink import Sink, start_site

HOOK = "http://127.0.0.1:9/hook"
NUL = "\u0000"


def spec(**changes: Any) -> dict[str, Any]:
    body = http_job(HOOK, {"type": "once", "at": "2099-01-01T00:00:00Z"})
    body.update(changes)
    return body


def kafka_target(**fields: Any) -> dict[str, Any]:
    return {"type": "kafka", "topic": "dev.user.events", **fields}


CRON = {"type": "cron", "expression": "0 0 * * *", "timezone": "UTC"}
NUL_CASES = [
    ("name", spec(name=f"a{NUL}b")),
    ("labels", spec(labels={"team": f"da{NUL}ta"})),
    ("labels", spec(labels={f"te{NUL}am": "data"})),
    ("payload", spec(payload={"deep": [{"x": f"y{NUL}"}]})),
    ("payload", spec(payload={f"k{NUL}": 1})),
    ("payload", spec(payload=f"{NUL}")),
    ("target.body", spec(target={"type": "http", "url": HOOK, "body": {"a": f"{NUL}"}})),
    ("target.body", spec(target={"type": "http", "url": HOOK, "body": f"x{NUL}"})),
    ("target.headers", spec(target={"type": "http", "url": HOOK, "headers": {"X-A": f"{NUL}"}})),
    ("target.url", spec(target={"type": "http", "url": f"{HOOK}?q={NUL}"})),
    ("target.key", spec(target=kafka_target(key=f"k{NUL}"))),
    ("target.value", spec(target=kafka_target(value={"v": f"{NUL}"}))),
    ("schedule.expression", spec(schedule={**CRON, "expression": f"0 0 * * *{NUL}"})),
    ("schedule.timezone", spec(schedule={**CRON, "timezone": f"UTC{NUL}"})),
]


@pytest.mark.parametrize(("field", "body"), NUL_CASES, ids=[f"{f}-{i}" for i, (f, _) in
                                                            enumerate(NUL_CASES)])
async def test_a_nul_anywhere_is_422_naming_the_field(
    api: httpx.AsyncClient, field: str, body: dict[str, Any],
) -> None:
    resp = await api.post("/jobs", json=body)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    # A label key is checked by its pattern first, which names the key too ("labels.<key>").
    assert any(e["field"].startswith(field) for e in resp.json()["errors"]), resp.json()


OUT_OF_RANGE = [
    ("schedule.at", {"type": "once", "at": "0001-01-01T00:00:00Z"}),
    ("schedule.at", {"type": "once", "at": "1969-12-31T23:59:59Z"}),
    ("schedule.at", {"type": "once", "at": "9999-12-31T23:59:59Z"}),
    ("schedule.start_at", {"type": "interval", "every_seconds": 60,
                           "start_at": "0001-01-01T00:00:00Z"}),
    ("schedule.end_at", {"type": "interval", "every_seconds": 60,
                         "end_at": "9999-12-31T00:00:00Z"}),
    ("schedule.start_at", {**CRON, "start_at": "0001-01-01T00:00:00Z"}),
]


@pytest.mark.parametrize(("field", "schedule"), OUT_OF_RANGE)
async def test_instants_out_of_range_are_422_naming_the_field(
    api: httpx.AsyncClient, field: str, schedule: dict[str, Any],
) -> None:
    resp = await api.post("/jobs", json=spec(schedule=schedule))
    assert resp.status_code == 422, resp.text
    assert field in [e["field"] for e in resp.json()["errors"]], resp.json()


@pytest.mark.parametrize(("field", "changes"), [
    ("payload", {"payload": {"n": 2**64}}),
    ("max_runs", {"max_runs": 2**63}),
])
async def test_integers_beyond_64_bits_are_422(
    api: httpx.AsyncClient, field: str, changes: dict[str, Any],
) -> None:
    resp = await api.post("/jobs", json=spec(**changes))
    assert resp.status_code == 422, resp.text
    assert field in [e["field"] for e in resp.json()["errors"]]


async def test_once_at_2000_fires_at_once_is_recorded_and_the_next_job_still_fires(
    api: httpx.AsyncClient, sink: Sink, path: str,
) -> None:
    old = await create(api, http_job(sink.url(path), {"type": "once",
                                                      "at": "2000-01-01T00:00:00Z"}))
    assert len(await sink.wait_for(path, 1, timeout=15)) == 1
    run = (await wait_runs(api, old, "succeeded"))[0]
    assert run["lateness_ms"] > 26 * 365 * 86400 * 1000  # > 2**31: needs the bigint column

    after = f"{path}/after"
    await create(api, http_job(sink.url(after), {"type": "delay", "seconds": 1}))
    assert len(await sink.wait_for(after, 1, timeout=15)) == 1


@pytest.fixture
async def binary_hook() -> AsyncIterator[str]:
    """A webhook answering with bytes that are not text (a PNG header: NULs in the first KiB)."""
    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00" + bytes(2000),
                            content_type="image/png")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = await start_site(runner)
    yield f"http://127.0.0.1:{port}/png"
    await runner.cleanup()


async def test_a_webhook_answering_nul_bytes_is_recorded_and_nothing_stops(
    api: httpx.AsyncClient, pg: asyncpg.Pool[Any], binary_hook: str, sink: Sink, path: str,
) -> None:
    spec = http_job(binary_hook, {"type": "now"})
    spec["target"]["store_response"] = True
    job_id = await create(api, spec)
    run = (await wait_runs(api, job_id, "succeeded"))[0]
    excerpt = await pg.fetchval("SELECT response_excerpt FROM job_runs WHERE run_id = $1",
                                run["run_id"])
    assert excerpt.startswith("\ufffdPNG\r\n\x1a\n\ufffd\ufffd\ufffd\rIHDR")
    assert NUL not in excerpt

    await create(api, http_job(sink.url(path), {"type": "now"}))
    assert len(await sink.wait_for(path, 1, timeout=15)) == 1
