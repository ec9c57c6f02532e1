"""The express lane for creates (job_service.express, ADR 0054) answers exactly as FastAPI does.

Two apps, one with the lane and one without, get the same requests — valid, malformed, hostile
and at the boundaries — and must give the same status, headers and body (ids aside) and publish
the same commands. A difference in either direction is a bug: the lane exists to be faster, not
different.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.middleware import Middleware

from duetime.lifecycle import Lifecycle
from duetime.settings import QuotaSettings
from job_service.api import build_app
from job_service.publisher import Unavailable
from job_service.quotas import Quotas
from job_service.usage import UsageCache
from schemas.events import JobCommand
from tests.support.gateway import AsTenant
from tests.unit.test_job_service_validation import (
    ASSERTIONS,
    GOOD_URL,
    IDS,
    TENANT,
    Published,
    Reserved,
    job,
)

ID = re.compile(r"[0-9a-f]{20,}")  # job ids (duetime.job_ids)
JSON = {"Content-Type": "application/json"}


class Flaky(Published):
    """Published, until told Kafka is away."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def publish(self, command: JobCommand) -> None:
        if self.down:
            raise Unavailable("test: Kafka away", unknown=True)
        await super().publish(command)


@dataclass
class Lane:
    client: httpx.AsyncClient
    published: Flaky


@dataclass
class Pair:
    express: Lane
    plain: Lane

    async def post(self, path: str, content: bytes, headers: dict[str, Any] | None = None,
                   ) -> tuple[httpx.Response, httpx.Response]:
        """The same request to both apps; their answers, checked equal."""
        fast = await self.express.client.post(path, content=content, headers=headers)
        slow = await self.plain.client.post(path, content=content, headers=headers)
        assert fast.status_code == slow.status_code, (fast.text, slow.text)
        assert _headers(fast) == _headers(slow)
        assert _body(fast) == _body(slow)
        fast_sent = [_command(c) for c in self.express.published.commands]
        slow_sent = [_command(c) for c in self.plain.published.commands]
        assert fast_sent == slow_sent
        return fast, slow

    def set_down(self, down: bool) -> None:
        self.express.published.down = self.plain.published.down = down


def _headers(resp: httpx.Response) -> list[tuple[str, str]]:
    assert int(resp.headers["content-length"]) == len(resp.content)
    # A next_run_at a few microseconds apart may differ in length: the length is checked above.
    return [(k, ID.sub("<id>", v)) for k, v in resp.headers.multi_items() if k != "content-length"]


def _body(resp: httpx.Response) -> Any:
    body = json.loads(ID.sub("<id>", resp.text))
    if isinstance(body, dict) and body.get("next_run_at"):
        body["next_run_at"] = "<time>"  # due "now + delay": the two requests ran apart
    return body


def _command(command: JobCommand) -> dict[str, Any]:
    # Ids and times differ (keyed job ids aside: test_idempotency_keys_answer_the_same).
    return command.model_dump(mode="json", exclude={"command_id", "issued_at", "job_id"})


def _app(published: Flaky, express: bool) -> Any:
    async def lookup(job_id: str) -> tuple[str, dict[str, Any]] | None:
        return None

    quotas = Quotas(QuotaSettings(quota_active_jobs=3), UsageCache(None, 2.0))
    return build_app(Lifecycle("job_service"), published, Reserved(), lookup, IDS, ASSERTIONS,
                     quotas=quotas, express=express)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    lanes = []
    clients = []
    for express in (True, False):
        published = Flaky()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(published, express)),
                                   base_url="http://job-service",
                                   auth=AsTenant(ASSERTIONS, TENANT))
        clients.append(client)
        lanes.append(Lane(client, published))
    try:
        yield Pair(*lanes)
    finally:
        for client in clients:
            await client.aclose()


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


VALID_JOBS = [
    job(),
    job(name="名前 ☃ \U0001f600", description="x" * 1000),
    job(schedule={"type": "cron", "expression": "30 2 * * *", "timezone": "Europe/Berlin"}),
    job(schedule={"type": "interval", "every_seconds": 5}),
    job(schedule={"type": "once", "at": "2099-01-01T00:00:00Z"}),
    job(labels={"team": "a", "tier": "1"}, max_attempts=3),
]
REFUSED_JOBS = [
    job(schedule={"type": "once", "at": "2000-01-01T00:00:00Z"}),  # in the past: the check's 422
    job(schedule={"type": "cron", "expression": "61 * * * *"}),
    job(url="http://169.254.169.254/latest/meta-data/"),
    job(url="ftp://example.com/"),
    job(extra_field=1),
    {**job(), "target": {"type": "http", "url": GOOD_URL, "headers": {"Host": "evil"}}},
    {**job(), "target": {"type": "kafka", "topic": "duetime.jobs.commands", "value": {}}},
    {"name": "x"},
    {},
]
HOSTILE_BODIES = [
    b"", b" ", b"{", b"not json", b"[]", b'"x"', b"null", b"1e999",
    b'{"name": "a",}',
    b"\xef\xbb\xbf" + raw(job()),  # a BOM: stdlib json refuses it
    raw(job()).decode().encode("utf-16"),  # stdlib json reads UTF-16; orjson does not
    raw(job()).replace(b'"hello"', b'"\\ud800"'),  # a lone surrogate in a string
    raw(job()).replace(b'"world"', b"NaN"),  # NaN: stdlib json reads it
    raw(job()).replace(b'"world"', b"1" * 400),  # beyond a double
    raw(job()).replace(b'"world"', str(2**64).encode()),  # beyond 64 bits: orjson makes a float
    raw(job()).replace(b'"world"', str(-2**63 - 1).encode()),
    raw(job(max_runs=2**63)),
    raw(job()).replace(b'"world"', b"1.5e308"),
    raw(job()).replace(b'"world"', b"[" * 2000 + b"]" * 2000),  # deeper than orjson goes
    raw(job()).replace(b'"world"', b'"a\\u0000b"'),
    b'{"name": "first", ' + raw(job())[1:],  # the key twice: the last one wins in both
    raw(job()).replace(b'"unit"', b'"\xff"'),  # not UTF-8
]


@pytest.mark.parametrize("spec", VALID_JOBS + REFUSED_JOBS)
async def test_jobs_answer_the_same(pair: Pair, spec: dict[str, Any]) -> None:
    await pair.post("/jobs", raw(spec), JSON)


@pytest.mark.parametrize("body", HOSTILE_BODIES)
async def test_hostile_job_bodies_answer_the_same(pair: Pair, body: bytes) -> None:
    await pair.post("/jobs", body, JSON)


@pytest.mark.parametrize("body", [
    raw({"seconds": 10, "url": GOOD_URL}), raw({"hours": 1, "minutes": 2, "url": GOOD_URL}),
    raw({"seconds": 0, "url": GOOD_URL}), raw({"seconds": 1.5, "url": GOOD_URL}),
    raw({"seconds": "10", "url": GOOD_URL}), raw({"seconds": 10, "url": "file:///etc/passwd"}),
    *HOSTILE_BODIES,
])
async def test_timers_answer_the_same(pair: Pair, body: bytes) -> None:
    await pair.post("/timers", body, JSON)


@pytest.mark.parametrize("headers", [
    {},  # no content type: FastAPI reads JSON all the same
    {"Content-Type": "application/json; charset=utf-8"},
    {"Content-Type": "APPLICATION/JSON"},
    {"Content-Type": "text/plain"},
    {"Content-Type": "application/merge-patch+json"},
    {"Content-Type": "application/x-www-form-urlencoded"},
    {"Content-Type": ""},
    {"Content-Type": "application/json", "Idempotency-Key": ""},
    {"Content-Type": "application/json", "Idempotency-Key": "k" * 256},
    {"Content-Type": "application/json", "Idempotency-Key": "k" * 255},
    {"Content-Type": "application/json", "Idempotency-Key": "clé ünïcode".encode()},  # UTF-8 bytes
])
async def test_headers_are_read_the_same(pair: Pair, headers: dict[str, Any]) -> None:
    await pair.post("/jobs", raw(job()), headers)


async def test_repeated_headers_are_read_the_same(pair: Pair) -> None:
    for headers in ([("Content-Type", "application/json"), ("Content-Type", "text/plain")],
                    [("Content-Type", "application/json"), ("Idempotency-Key", "a"),
                     ("Idempotency-Key", "b")]):
        for lane in (pair.express, pair.plain):
            lane.client.headers = httpx.Headers(headers)
        await pair.post("/jobs", raw(job()))


async def test_idempotency_keys_answer_the_same(pair: Pair) -> None:
    keyed = {**JSON, "Idempotency-Key": "order-7"}
    first, _ = await pair.post("/jobs", raw(job()), keyed)
    again, _ = await pair.post("/jobs", raw(job()), keyed)
    assert again.json()["job_id"] == first.json()["job_id"]
    assert [c.job_id for c in pair.express.published.commands] == \
        [c.job_id for c in pair.plain.published.commands]
    conflict, _ = await pair.post("/jobs", raw(job(name="another")), keyed)
    assert conflict.status_code == 409


async def test_errors_after_acceptance_answer_the_same(pair: Pair) -> None:
    pair.set_down(True)
    unavailable, _ = await pair.post("/jobs", raw(job()), JSON)
    assert unavailable.status_code == 503 and unavailable.headers["retry-after"] == "2"
    pair.set_down(False)
    statuses = [(await pair.post("/timers", raw({"seconds": 9, "url": GOOD_URL}), JSON))[0]
                .status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]  # the quota of three active jobs
    assert len(pair.express.published.commands) == 3


class Spy:
    """Innermost middleware: notes the requests that got past the lane to FastAPI's router."""

    def __init__(self, app: Any, reached: list[str]) -> None:
        self.app, self.reached = app, reached

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.reached.append(scope["path"])
        await self.app(scope, receive, send)


async def test_the_lane_answers_valid_creates_itself() -> None:
    """Guards the tests above against comparing FastAPI with itself: a valid create never
    reaches the express app's router; an invalid one does."""
    reached: list[str] = []
    app = _app(Flaky(), express=True)
    app.user_middleware.append(Middleware(Spy, reached=reached))  # inside the lane
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://job-service",
                                 auth=AsTenant(ASSERTIONS, TENANT)) as client:
        assert (await client.post("/jobs", content=raw(job()), headers=JSON)).status_code == 202
        timer = raw({"seconds": 3, "url": GOOD_URL})
        assert (await client.post("/timers", content=timer, headers=JSON)).status_code == 201
        assert reached == []
        assert (await client.post("/jobs", content=b"{", headers=JSON)).status_code == 400
        assert reached == ["/jobs"]


async def test_express_answers_are_timed_under_their_route(pair: Pair) -> None:
    def count(status: str) -> float:
        return REGISTRY.get_sample_value("duetime_http_request_duration_seconds_count", {
            "route": "/timers", "method": "POST", "status": status}) or 0.0

    before = count("201")
    await pair.express.client.post("/timers", content=raw({"seconds": 3, "url": GOOD_URL}),
                                   headers=JSON)
    assert count("201") == before + 1
