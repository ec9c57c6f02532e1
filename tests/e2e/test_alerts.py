"""Per-job notifications and GET /alerts through the gateway, on the real stack (ADR 0033).

A failing job's `on_failure` webhook arrives signed; a run still not started `late_after_seconds`
after it was due (the dispatcher or the executor hanging) triggers `on_late` while it waits, and
only then; the first success after failures triggers `on_recovered`, once; GET /alerts lists
them for their tenant only; a notification to a blocked address is never made; every new field
and parameter refuses hostile input.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from schemas.redaction import REDACTED
from tests.support.jobs import Cleanup, http_job
from tests.support.problems import problem
from tests.support.sink import Hit, Sink
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
# The executor rereads signing secrets every 2 s; a query on top.
PROPAGATION_SECONDS = 4.0
# Loopback ports outside the stack's egress allowlist (DUETIME_EGRESS_ALLOW).
BLOCKED_PORTS = range(27500, 27600)


@pytest.fixture
async def secret(api: httpx.AsyncClient) -> AsyncIterator[str]:
    resp = await api.post("/signing-secrets")
    assert resp.status_code == 201, resp.text
    await asyncio.sleep(PROPAGATION_SECONDS)
    yield resp.json()["secret"]
    await api.delete(f"/signing-secrets/{resp.json()['id']}")


def hook(sink: Sink, path: str, **extra: Any) -> dict[str, Any]:
    return {"url": sink.url(path), "headers": {"Authorization": "Bearer receiver-token"}, **extra}


async def alerts(api: httpx.AsyncClient, since: datetime, **params: Any) -> list[dict[str, Any]]:
    """Every alert since `since`, following the cursor page by page."""
    found: list[dict[str, Any]] = []
    query: dict[str, Any] = {"since": since.isoformat(), "limit": 2, **params}
    while True:
        resp = await api.get("/alerts", params=query)
        assert resp.status_code == 200, resp.text
        found += resp.json()["items"]
        if resp.json()["next_cursor"] is None:
            return found
        query["cursor"] = resp.json()["next_cursor"]


def body(hit: Hit) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(hit.body)
    return data


async def test_a_failure_is_notified_signed_and_listed_for_its_tenant_only(
        api: httpx.AsyncClient, api_b: httpx.AsyncClient, make_sink: Callable[..., Awaitable[Sink]],
        jobs: Cleanup, secret: str) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    target, notify = f"/target/{uuid.uuid4().hex}", f"/notify/{uuid.uuid4().hex}"
    sink = await make_sink(status_for=lambda hit: 500 if hit.path == target else 200)
    spec = http_job(sink.url(target), {"type": "now"}, retry={"max_attempts": 1},
                    on_failure=hook(sink, notify))
    job_id = await jobs.create(api, spec)

    (hit,) = await sink.wait_for(notify, timeout=30)
    Webhook(secret).verify(hit.body, hit.headers, json_parse=False)  # raises if not signed
    alert = body(hit)
    assert alert["kind"] == "failure" and alert["job_id"] == job_id
    assert alert["detail"]["status"] == "failed" and alert["detail"]["error"] == "HTTP 500"
    assert hit.headers["webhook-id"] == hit.headers["Idempotency-Key"] == alert["alert_id"]
    assert hit.headers["Authorization"] == "Bearer receiver-token"
    assert "webhook" not in alert  # where it is sent (with its headers) is not in the body

    async def ours() -> list[dict[str, Any]]:
        return [a for a in await alerts(api, since, kind="failure") if a["job_id"] == job_id]

    mine = await eventually(ours, timeout=10)
    assert [a["alert_id"] for a in mine] == [alert["alert_id"]]
    assert mine[0]["run_id"] == alert["run_id"]
    assert not [a for a in await alerts(api_b, since) if a["job_id"] == job_id]
    # The job shows its receiver's token redacted, like a target's.
    shown = (await api.get(f"/jobs/{job_id}")).json()
    assert shown["on_failure"]["headers"]["Authorization"] == REDACTED


async def test_the_first_success_after_failures_is_a_recovery_and_only_the_first(
        api: httpx.AsyncClient, make_sink: Callable[..., Awaitable[Sink]],
        jobs: Cleanup) -> None:
    """Four failures a second apart notify once (the rest are held back for a minute, still
    listed); the recovery after them is always sent."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    target = f"/target/{uuid.uuid4().hex}"
    failures, recoveries = f"/failed/{uuid.uuid4().hex}", f"/recovered/{uuid.uuid4().hex}"
    calls = 0

    def answer(hit: Hit) -> int:
        nonlocal calls
        if hit.path != target:
            return 200
        calls += 1
        return 500 if calls <= 4 else 200

    sink = await make_sink(status_for=answer)
    spec = http_job(sink.url(target), {"type": "interval", "every_seconds": 1},
                    retry={"max_attempts": 1}, on_failure=hook(sink, failures),
                    on_recovered=hook(sink, recoveries))
    job_id = await jobs.create(api, spec)

    (recovered,) = await sink.wait_for(recoveries, timeout=30)
    # Three more successes: none of them is a recovery (the previous outcome was a success).
    await sink.wait_for(target, count=calls + 3, timeout=30)
    listed = [a for a in await eventually(lambda: alerts(api, since)) if a["job_id"] == job_id]
    assert sorted(a["kind"] for a in listed if a["kind"] != "late") == \
        ["failure"] * 4 + ["recovered"]
    assert body(recovered)["detail"]["previous_status"] == "failed"
    assert len(sink.hits_for(recoveries)) == 1
    (failed,) = sink.hits_for(failures)
    assert "suppressed" not in body(failed)["detail"]


def frozen(service: str) -> Callable[[], None]:
    """SIGSTOP `service` (as if it hung); returns how to thaw it."""
    pid = int((ROOT / ".stack" / "run" / f"{service}.pid").read_text().split()[0])
    os.kill(pid, signal.SIGSTOP)
    return lambda: os.kill(pid, signal.SIGCONT)


async def late_alerts(api: httpx.AsyncClient, since: datetime, job_id: str) -> list[dict[str, Any]]:
    return [a for a in await alerts(api, since, kind="late") if a["job_id"] == job_id]


async def due_soon_late_after_1s(
        api: httpx.AsyncClient, make_sink: Callable[..., Awaitable[Sink]],
        jobs: Cleanup) -> tuple[Sink, str, str, datetime, str]:
    """A one-shot job due in 3 s, late after 1 s, with its own sink: (sink, target path,
    on_late path, due, job id)."""
    sink = await make_sink()
    target, late = f"/target/{uuid.uuid4().hex}", f"/late/{uuid.uuid4().hex}"
    due = datetime.now(UTC) + timedelta(seconds=3)
    spec = http_job(sink.url(target), {"type": "once", "at": due.isoformat()},
                    late_after_seconds=1, on_late=hook(sink, late))
    return sink, target, late, due, await jobs.create(api, spec)


@pytest.mark.alone
async def test_a_run_never_queued_is_late_while_it_waits_and_once(
        api: httpx.AsyncClient, make_sink: Callable[..., Awaitable[Sink]],
        jobs: Cleanup) -> None:
    """The dispatcher hangs (SIGSTOP) over the run's due time: `on_late` arrives while the run
    still waits, and not again when it finally starts late."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    sink, target, late, due, job_id = await due_soon_late_after_1s(api, make_sink, jobs)
    thaw = frozen("dispatcher")
    try:
        (hit,) = await sink.wait_for(late, timeout=20)
        assert not sink.hits_for(target), "told while it waits"
    finally:
        thaw()
    alert = body(hit)
    assert alert["kind"] == "late" and alert["job_id"] == job_id
    assert alert["detail"]["waiting"] == "not queued"
    assert alert["detail"]["late_after_seconds"] == 1
    scheduled = datetime.fromisoformat(alert["detail"]["scheduled_at"])
    assert abs((scheduled - due).total_seconds()) < 0.001

    await sink.wait_for(target, timeout=30)  # late, not lost
    runs = await eventually(lambda: _finished(api, job_id), timeout=20)
    assert runs[0]["lateness_ms"] > 1000 and runs[0]["run_id"] == alert["run_id"]
    assert [a["alert_id"] for a in await late_alerts(api, since, job_id)] == [alert["alert_id"]]
    assert len(sink.hits_for(late)) == 1 and len(sink.hits_for(target)) == 1


async def _finished(api: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]] | None:
    items: list[dict[str, Any]] = (await api.get(f"/jobs/{job_id}/runs")).json()["items"]
    return items if items and items[0]["status"] == "succeeded" else None


@pytest.mark.alone
async def test_a_run_queued_for_a_hung_executor_is_late_while_it_waits(
        api: httpx.AsyncClient, make_sink: Callable[..., Awaitable[Sink]],
        jobs: Cleanup) -> None:
    """The executor hangs: the run request is queued and nobody takes it. The alert is raised
    (listed) while it waits; its notification leaves once a notifier is back, once."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    sink, target, late, _, job_id = await due_soon_late_after_1s(api, make_sink, jobs)
    thaw = frozen("executor")
    try:
        (alert,) = await eventually(lambda: late_alerts(api, since, job_id), timeout=20)
        assert alert["detail"]["waiting"] == "queued" and not sink.hits_for(target)
    finally:
        thaw()
    (hit,) = await sink.wait_for(late, timeout=60)
    assert body(hit)["alert_id"] == alert["alert_id"]
    await sink.wait_for(target, timeout=60)
    await eventually(lambda: _finished(api, job_id), timeout=20)
    assert len(await late_alerts(api, since, job_id)) == 1 and len(sink.hits_for(late)) == 1


async def test_an_on_time_run_is_not_late(
        api: httpx.AsyncClient, make_sink: Callable[..., Awaitable[Sink]],
        jobs: Cleanup) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    sink = await make_sink()
    target, late = f"/target/{uuid.uuid4().hex}", f"/late/{uuid.uuid4().hex}"
    spec = http_job(sink.url(target), {"type": "interval", "every_seconds": 1},
                    late_after_seconds=60, on_late=hook(sink, late))
    job_id = await jobs.create(api, spec)
    await sink.wait_for(target, count=3, timeout=30)
    runs = (await api.get(f"/jobs/{job_id}/runs")).json()["items"]
    assert all(r["lateness_ms"] is None or r["lateness_ms"] < 60_000 for r in runs)
    assert not [a for a in await alerts(api, since) if a["job_id"] == job_id]
    assert not sink.hits_for(late)


async def test_a_notification_to_a_blocked_address_is_never_made(
        api: httpx.AsyncClient, make_sink: Callable[..., Awaitable[Sink]],
        jobs: Cleanup) -> None:
    """Loopback outside the allowlist: the egress policy of http targets holds for webhooks."""
    since = datetime.now(UTC) - timedelta(seconds=1)
    failing = await make_sink(status=500)
    internal = await make_sink(ports=BLOCKED_PORTS)
    notify = f"/notify/{uuid.uuid4().hex}"
    spec = http_job(failing.url("/target"), {"type": "now"}, retry={"max_attempts": 1},
                    on_failure={"url": internal.url(notify)})

    async def blocked() -> float | None:
        port = os.environ.get("DUETIME_EXECUTOR_PORT", "18106")
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        for line in metrics.splitlines():
            if line.startswith('duetime_executor_notifications_total{kind="failure",'
                               'outcome="blocked"}'):
                return float(line.split()[-1])
        return None

    # Read before the create: the run, its alert and the refused notification can all be done
    # (~40 ms) before a test process that lost the CPU for a moment reads the counter.
    before = await blocked() or 0.0
    job_id = await jobs.create(api, spec)

    async def ours() -> list[dict[str, Any]]:  # other tests' failure alerts may come first
        return [a for a in await alerts(api, since, kind="failure") if a["job_id"] == job_id]

    assert await eventually(ours, timeout=30)  # the alert is recorded all the same

    async def settled() -> bool:  # refused (counted), or, were the policy broken, delivered
        return bool(internal.hits_for(notify)) or await _more(blocked, before)

    await eventually(settled, timeout=20)
    assert not internal.hits_for(notify)
    assert await _more(blocked, before)


async def _more(read: Callable[[], Awaitable[float | None]], than: float) -> bool:
    value = await read()
    return value is not None and value > than


# ---- hostile and boundary input -----------------------------------------------------------

BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"on_late": {"url": "https://example.com/late"}}, "late_after_seconds"),
    ({"late_after_seconds": 0}, "late_after_seconds"),
    ({"late_after_seconds": -5}, "late_after_seconds"),
    ({"late_after_seconds": 1.5}, "late_after_seconds"),
    ({"late_after_seconds": "5"}, "late_after_seconds"),
    ({"late_after_seconds": True}, "late_after_seconds"),
    ({"late_after_seconds": 7 * 86400 + 1}, "late_after_seconds"),
    ({"late_after_seconds": 2**70}, "late_after_seconds"),
    ({"on_failure": {"url": "ftp://example.com/x"}}, "on_failure.url"),
    ({"on_failure": {"url": "/relative"}}, "on_failure.url"),
    ({"on_failure": {"url": "https://example.com/\r\nX-Evil: 1"}}, "on_failure.url"),
    ({"on_failure": {"url": "https://example.com/" + "a" * 5000}}, "on_failure.url"),
    ({"on_failure": {"url": "https://example.com/\u0000"}}, "on_failure.url"),
    ({"on_failure": "https://example.com/hook"}, "on_failure"),
    ({"on_failure": {}}, "on_failure.url"),
    ({"on_failure": {"url": "https://example.com", "body": {"a": 1}}}, "on_failure.body"),
    ({"on_failure": {"url": "https://example.com", "method": "GET"}}, "on_failure.method"),
    ({"on_failure": {"url": "https://example.com", "type": "kafka"}}, "on_failure.type"),
    ({"on_failure": {"url": "https://example.com", "timeout_seconds": 0}},
     "on_failure.timeout_seconds"),
    ({"on_failure": {"url": "https://example.com", "timeout_seconds": 61}},
     "on_failure.timeout_seconds"),
    ({"on_recovered": {"url": "https://example.com", "headers": {"Host": "internal"}}},
     "on_recovered.headers.Host"),
    ({"on_recovered": {"url": "https://example.com", "headers": {"webhook-signature": "v1,x"}}},
     "on_recovered.headers.webhook-signature"),
    ({"on_late": {"url": "https://example.com", "headers": {"X-Duetime-Job-Id": "other"}},
      "late_after_seconds": 5}, "on_late.headers.X-Duetime-Job-Id"),
    ({"on_late": {"url": "https://example.com", "headers": {"X-A": "b\r\nc"}},
      "late_after_seconds": 5}, "on_late.headers"),
]


@pytest.mark.alone  # it holds the stack notifier's slots for one tenant while it runs
async def test_a_tenant_whose_receivers_hang_does_not_hold_back_another_tenants_alerts(
        api: httpx.AsyncClient, api_b: httpx.AsyncClient,
        make_sink: Callable[..., Awaitable[Sink]], jobs: Cleanup) -> None:
    """ADR 0061 through the gateway: 40 failing jobs of one tenant notify a receiver that
    does not answer for 15 s — more than the notifier's 32 slots; it holds at most its cap of
    them (8), and another tenant's failure is notified meanwhile (with every slot taken it
    would wait for the receiver)."""
    target = f"/target/{uuid.uuid4().hex}"
    failing = await make_sink(status_for=lambda hit: 500 if hit.path == target else 200)
    hanging = await make_sink(delay_seconds=15)
    for i in range(40):
        await jobs.create(api, http_job(failing.url(target), {"type": "now"},
                                        retry={"max_attempts": 1},
                                        on_failure=hook(hanging, f"/notify/{i}",
                                                        timeout_seconds=30)))
    await eventually(lambda: _at_least(len(hanging.hits), 8), timeout=30)
    notify_b = f"/notify-b/{uuid.uuid4().hex}"
    await jobs.create(api_b, http_job(failing.url(target), {"type": "now"},
                                      retry={"max_attempts": 1},
                                      on_failure=hook(failing, notify_b)))
    (delivered,) = await failing.wait_for(notify_b, timeout=10)
    assert body(delivered)["kind"] == "failure"
    assert len(hanging.hits) == 8  # the first tenant's cap of 32 slots, not all of them


async def _at_least(value: int, least: int) -> bool | None:
    return True if value >= least else None


@pytest.mark.parametrize(("extra", "field"), BAD_FIELDS)
async def test_bad_notification_fields_are_refused_naming_the_field(
        api: httpx.AsyncClient, sink: Sink, extra: dict[str, Any], field: str) -> None:
    spec = http_job(sink.url("/never"), {"type": "delay", "seconds": 3600}, **extra)
    err = problem(await api.post("/jobs", json=spec), 422)
    assert any(e["field"].startswith(field) for e in err["errors"]), err


async def test_boundary_values_are_accepted_and_stored(
        api: httpx.AsyncClient, sink: Sink, jobs: Cleanup) -> None:
    for seconds in (1, 7 * 86400):
        spec = http_job(sink.url("/never"), {"type": "delay", "seconds": 3600},
                        late_after_seconds=seconds,
                        on_late={"url": "https://example.com/late", "method": "PUT",
                                 "timeout_seconds": 60})
        job_id = await jobs.create(api, spec)
        shown = (await api.get(f"/jobs/{job_id}")).json()
        assert shown["late_after_seconds"] == seconds
        assert shown["on_late"] == {"type": "http", "url": "https://example.com/late",
                                    "method": "PUT", "headers": {}, "timeout_seconds": 60}


BAD_PARAMS: list[tuple[str, str]] = [
    ("since=yesterday", "since"),
    ("since=2026-11-22T10:00:00", "since"),  # no offset
    ("since=2026-13-01T00:00:00Z", "since"),
    ("kind=disaster", "kind"),
    ("kind=", "kind"),
    ("limit=0", "limit"),
    ("limit=501", "limit"),
    ("limit=abc", "limit"),
    ("limit=-1", "limit"),
    ("limit=1&limit=2", "limit"),
    ("job=x", "job"),
    ("cursor=not-a-cursor", "cursor"),
    ("cursor=" + "a" * 3000, "cursor"),
    ("since=%00", "since"),
]


@pytest.mark.parametrize(("query", "field"), BAD_PARAMS)
async def test_bad_alert_parameters_are_422_naming_the_parameter(
        api: httpx.AsyncClient, query: str, field: str) -> None:
    err = problem(await api.get(f"/alerts?{query}"), 422)
    assert [e["field"] for e in err["errors"]] == [field], err


async def test_a_cursor_of_another_listing_is_refused(api: httpx.AsyncClient) -> None:
    runs = await api.get("/runs", params={"limit": 1})
    cursor = runs.json()["next_cursor"]
    if cursor is None:  # a fresh stack may have one run or none: forge the runs listing's shape
        cursor = base64.urlsafe_b64encode(b'["runs","2026-01-01T00:00:00+00:00","x"]').decode()
    err = problem(await api.get("/alerts", params={"cursor": cursor}), 422)
    assert err["errors"][0]["field"] == "cursor"


async def test_alerts_need_a_key(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/alerts")).status_code == 401


async def test_a_tenant_without_alerts_gets_an_empty_page(api_b: httpx.AsyncClient) -> None:
    far = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    resp = await api_b.get("/alerts", params={"since": far})
    assert resp.status_code == 200
    assert resp.json() == {"items": [], "next_cursor": None}
