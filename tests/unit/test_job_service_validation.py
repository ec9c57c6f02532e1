"""The job service's validation, in process: every rule answers a problem+json naming the field,
and nothing is published.

The ASGI app from `job_service.api.build_app` runs with in-memory stand-ins for Kafka, the
idempotency store and the job lookup: these cases test what the service refuses, not where
accepted commands go (the gateway end-to-end tests keep a thin set of the same answers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.tenant_assertion import TenantAssertions
from job_service.api import build_app
from job_service.idempotency import IdempotencyStore
from job_service.publisher import CommandPublisher
from schemas.events import JobCommand
from tests.support.gateway import AsTenant
from tests.support.problems import problem

TENANT = "tenant-a"
GOOD_URL = "http://127.0.0.1:9/hook"
IDS = JobIds("unit-test-secret")
ASSERTIONS = TenantAssertions("unit-test-gateway-secret")


class Published(CommandPublisher):
    """Keeps what would have gone to Kafka."""

    def __init__(self) -> None:
        self.commands: list[JobCommand] = []

    async def publish(self, command: JobCommand) -> None:
        self.commands.append(command)


class Reserved(IdempotencyStore):
    def __init__(self) -> None:
        self.keys: dict[tuple[str, str], str] = {}

    async def reserve(self, tenant: str, key: str, digest: str) -> bool:
        return self.keys.setdefault((tenant, key), digest) == digest


@dataclass
class Service:
    client: httpx.AsyncClient
    published: Published
    jobs: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def existing_job(self, spec: dict[str, Any]) -> str:
        """A job of this tenant the writer has persisted, with `spec`."""
        job_id = IDS.new(TENANT)
        self.jobs[job_id] = (TENANT, spec)
        return job_id


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    published = Published()
    jobs: dict[str, tuple[str, dict[str, Any]]] = {}

    async def lookup(job_id: str) -> tuple[str, dict[str, Any]] | None:
        return jobs.get(job_id)

    app = build_app(Lifecycle("job_service"), published, Reserved(), lookup, IDS, ASSERTIONS)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://job-service",
                                 auth=AsTenant(ASSERTIONS, TENANT)) as client:
        yield Service(client, published, jobs)


def job(url: str = GOOD_URL, schedule: dict[str, Any] | None = None,
        **extra: Any) -> dict[str, Any]:
    return {"name": "unit", "schedule": schedule or {"type": "delay", "seconds": 5},
            "target": {"type": "http", "url": url, "method": "POST",
                       "headers": {"X-Test": "yes"}, "body": {"hello": "world"}}, **extra}


def names(body: dict[str, Any], wanted: str) -> None:
    """The problem's `errors` name `wanted` (or a field inside it)."""
    fields = [e["field"] for e in body["errors"]]
    assert any(f == wanted or f.startswith(wanted + ".") for f in fields), fields


async def refused(service: Service, resp: httpx.Response, status: int,
                  wanted: str | None = None) -> None:
    body = problem(resp, status)
    if wanted is not None:
        names(body, wanted)
    assert service.published.commands == [], "a refused request published a command"


# ---- POST /timers -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("payload", "wanted"),
    [
        ({"hours": -1, "seconds": 5, "url": GOOD_URL}, "hours"),
        ({"minutes": -5, "seconds": 5, "url": GOOD_URL}, "minutes"),
        ({"seconds": 1.5, "url": GOOD_URL}, "seconds"),
        ({"seconds": "10", "url": GOOD_URL}, "seconds"),
        ({"seconds": True, "url": GOOD_URL}, "seconds"),
        ({"seconds": None, "url": GOOD_URL}, "seconds"),
        ({"hours": 0, "minutes": 0, "seconds": 0, "url": GOOD_URL}, "body"),
        ({"url": GOOD_URL}, "body"),
        ({"seconds": 5}, "url"),
        ({"seconds": 5, "url": "/relative/path"}, "url"),
        ({"seconds": 5, "url": "ftp://example.com/x"}, "url"),
        ({"seconds": 5, "url": "javascript:alert(1)"}, "url"),
        ({"seconds": 5, "url": "http://"}, "url"),
        ({"seconds": 5, "url": "http://a b/"}, "url"),
        ({"seconds": 5, "url": GOOD_URL, "extra": 1}, "extra"),
        ({"seconds": 10**12, "url": GOOD_URL}, "seconds"),
    ],
)
async def test_invalid_timer_is_422_naming_the_field(service: Service, payload: dict[str, Any],
                                                     wanted: str) -> None:
    await refused(service, await service.client.post("/timers", json=payload), 422, wanted)


@pytest.mark.parametrize(("raw", "status"), [
    (b"{", 400), (b"not json", 400), (b'{"seconds": 5,}', 400), (b"\xff\xfe", 400),
    (b"[]", 422), (b'"x"', 422),
])
async def test_malformed_timer_body_is_a_client_error(service: Service, raw: bytes,
                                                      status: int) -> None:
    resp = await service.client.post("/timers", content=raw,
                                     headers={"Content-Type": "application/json"})
    await refused(service, resp, status)


async def test_a_valid_timer_is_published(service: Service) -> None:
    # The fixture's stand-ins do accept: the refusals above are the rules, not the setup.
    resp = await service.client.post("/timers", json={"seconds": 5, "url": GOOD_URL})
    assert resp.status_code == 201, resp.text
    assert [c.type for c in service.published.commands] == ["create"]


async def test_without_the_gateways_assertion_it_is_401(service: Service) -> None:
    resp = await service.client.post("/timers", json={"seconds": 5, "url": GOOD_URL},
                                     headers={"X-Duetime-Tenant": TENANT},
                                     auth=httpx.Auth())
    await refused(service, resp, 401)


# ---- POST /jobs -------------------------------------------------------------------------------

JobMutation = Callable[[dict[str, Any]], object]


@pytest.mark.parametrize(
    ("mutate", "wanted"),
    [
        (lambda j: j.pop("name"), "name"),
        (lambda j: j.update(name="x" * 201), "name"),
        (lambda j: j.update(unknown=1), "unknown"),
        (lambda j: j.update(evil="'; DROP TABLE jobs; --"), "evil"),
        (lambda j: j["schedule"].update(type="sometimes"), "schedule"),
        (lambda j: j["schedule"].update(seconds=0), "schedule.seconds"),
        (lambda j: j["schedule"].update(seconds=-3), "schedule.seconds"),
        (lambda j: j.update(schedule={"type": "once"}), "schedule.at"),
        (lambda j: j["target"].update(url="not a url"), "target.url"),
        (lambda j: j["target"].update(method="BREW"), "target.method"),
        (lambda j: j["target"].update(timeout_seconds=0), "target.timeout_seconds"),
        (lambda j: j["target"]["headers"].update({"Bad\nName": "x"}), "target.headers"),
        (lambda j: j.update(priority=10), "priority"),
        (lambda j: j.update(retry={"max_attempts": 0}), "retry.max_attempts"),
        (lambda j: j.update(overlap="sometimes"), "overlap"),
        (lambda j: j.update(labels={"": "x"}), "labels"),
    ],
)
async def test_invalid_job_is_422_naming_the_field(service: Service, mutate: JobMutation,
                                                   wanted: str) -> None:
    body = job()
    mutate(body)
    await refused(service, await service.client.post("/jobs", json=body), 422, wanted)


@pytest.mark.parametrize(
    ("schedule", "wanted"),
    [
        ({"type": "cron", "expression": "0 0 30 2 *"}, "schedule.expression"),
        ({"type": "cron", "expression": "* * * * *", "timezone": "Nope/Zone"},
         "schedule.timezone"),
        ({"type": "interval", "every_seconds": 5, "start_at": "2030-01-02T00:00:00Z",
          "end_at": "2030-01-01T00:00:00Z"}, "schedule"),
        ({"type": "interval", "every_seconds": 0}, "schedule.every_seconds"),
    ],
)
async def test_invalid_schedule_is_422_naming_the_field(service: Service,
                                                        schedule: dict[str, Any],
                                                        wanted: str) -> None:
    resp = await service.client.post("/jobs", json=job(schedule=schedule))
    await refused(service, resp, 422, wanted)


async def test_an_overlong_idempotency_key_is_422(service: Service) -> None:
    resp = await service.client.post("/jobs", json=job(), headers={"Idempotency-Key": "k" * 256})
    await refused(service, resp, 422, "Idempotency-Key")


async def test_malformed_job_body_is_400(service: Service) -> None:
    resp = await service.client.post("/jobs", content=b"[1, 2",
                                     headers={"Content-Type": "application/json"})
    await refused(service, resp, 400)


@pytest.mark.parametrize("raw", [
    b"[1, 2", b"\xff\xfe{}", b"[" * 5000 + b"]" * 5000, b'{"a":' * 5000 + b"1" + b"}" * 5000,
], ids=["cut short", "not UTF-8", "arrays nested too deeply", "objects nested too deeply"])
@pytest.mark.parametrize("path", ["/jobs", "/timers", "/jobs:preview?count=1"])
async def test_every_unparseable_body_is_the_same_malformed_json_problem(
    service: Service, raw: bytes, path: str,
) -> None:
    """A body the parser gives up on — cut short, not UTF-8, or nested past what it follows —
    gets one answer, not FastAPI's generic "Error" for the last two kinds."""
    resp = await service.client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert problem(resp, 400)["title"] == "Malformed JSON"
    assert service.published.commands == []


# ---- POST /jobs:preview -----------------------------------------------------------------------

@pytest.mark.parametrize(("query", "status", "wanted"), [
    ("count=0", 422, "count"),
    ("count=1001", 422, "count"),
    ("count=abc", 422, "count"),
])
async def test_preview_rejects_a_bad_count(service: Service, query: str, status: int,
                                           wanted: str) -> None:
    resp = await service.client.post(f"/jobs:preview?{query}", json=job())
    await refused(service, resp, status, wanted)


async def test_preview_rejects_malformed_and_invalid_specs(service: Service) -> None:
    resp = await service.client.post("/jobs:preview", content=b"[1, 2",
                                     headers={"Content-Type": "application/json"})
    await refused(service, resp, 400)
    never = job(schedule={"type": "cron", "expression": "0 0 30 2 *"})
    await refused(service, await service.client.post("/jobs:preview", json=never), 422,
                  "schedule.expression")


# ---- PUT and PATCH /jobs/{id} -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("method", "kwargs", "status", "wanted"),
    [
        ("PUT", {"json": {**job(), "schedule": {"type": "once"}}}, 422, "schedule.at"),
        ("PUT", {"json": {**job(), "evil": "'; DROP TABLE jobs; --"}}, 422, "evil"),
        ("PUT", {"json": job(schedule={"type": "cron", "expression": "0 0 30 2 *"})}, 422,
         "schedule.expression"),
        ("PUT", {"content": b"[1, 2", "headers": {"Content-Type": "application/json"}}, 400,
         None),
        ("PATCH", {"json": {"schedule": {"type": "cron", "expression": "0 0 30 2 *",
                                         "seconds": None}}}, 422, "schedule.expression"),
        ("PATCH", {"json": {"priority": 42}}, 422, "priority"),
        ("PATCH", {"json": {"target": {"url": "not a url"}}}, 422, "target.url"),
        ("PATCH", {"json": {"name": None}}, 422, "name"),
        ("PATCH", {"json": ["not", "an", "object"]}, 422, None),
        ("PATCH", {"content": b"{oops", "headers": {"Content-Type": "application/json"}}, 400,
         None),
    ],
)
async def test_invalid_edits_are_refused_naming_the_field(
    service: Service, method: str, kwargs: dict[str, Any], status: int, wanted: str | None
) -> None:
    job_id = service.existing_job(job())
    resp = await service.client.request(method, f"/jobs/{job_id}", **kwargs)
    await refused(service, resp, status, wanted)


async def test_edits_of_a_job_nobody_issued_are_404(service: Service) -> None:
    for method in ("PUT", "PATCH"):
        resp = await service.client.request(method, "/jobs/%27%20OR%201%3D1", json=job())
        await refused(service, resp, 404)


async def test_another_tenants_job_is_404(service: Service) -> None:
    theirs = IDS.new("tenant-b")
    service.jobs[theirs] = ("tenant-b", job())
    for method, url in (("PATCH", f"/jobs/{theirs}"), ("DELETE", f"/jobs/{theirs}"),
                        ("POST", f"/jobs/{theirs}/pause"), ("POST", f"/jobs/{theirs}/run")):
        patch = {"name": "x"} if method == "PATCH" else None
        await refused(service, await service.client.request(method, url, json=patch), 404)


# ---- POST /jobs/{id}/run ----------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "status", "wanted"), [
    (b"{", 400, None),
    (b'{"override_overlap": "yes"}', 422, "override_overlap"),
    (b'{"other": 1}', 422, "other"),
])
async def test_run_now_options_are_validated(service: Service, raw: bytes, status: int,
                                             wanted: str | None) -> None:
    job_id = service.existing_job(job())
    for path in (f"/jobs/{job_id}/run", f"/jobs/{job_id}/runNow"):
        resp = await service.client.post(path, content=raw,
                                         headers={"Content-Type": "application/json"})
        await refused(service, resp, status, wanted)
