"""Issue 7, hole 7: secret headers of a target are write-only.

The exploit: whoever can read a job (a dashboard user, a log shipper, a consumer of the DLQ or
of job.rejected events) used to read its target's `Authorization` header, a credential of the
receiver. Now every echo shows `<redacted>` while the receiver still gets the real value; each
test plants a fresh random secret and looks for it everywhere it could leak.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer

from schemas.redaction import REDACTED
from schemas.topics import JOB_COMMANDS, JOB_COMMANDS_DLQ, JOB_EVENTS, RUNS_DLQ
from tests.support.jobs import Cleanup, get_job, http_job, wait_runs
from tests.support.kafka import find_messages, kafka_settings
from tests.support.sink import Hit, Sink
from tests.support.stack import ROOT
from tests.support.waiting import eventually

LOGS = ROOT / ".stack" / "logs"
# The fields of a job view that are its spec (what a GET-modify-PUT sends back).
SPEC_FIELDS = ("name", "schedule", "target", "retry", "overlap", "catchup",
               "catchup_window_seconds", "priority", "max_runs", "labels", "payload")


def planted() -> tuple[str, str]:
    """Two secret values no other test or log line can contain by chance."""
    return f"Bearer tok-{secrets.token_hex(16)}", f"apitok-{secrets.token_hex(16)}"


def secret_headers(auth: str, token: str) -> dict[str, str]:
    return {"Authorization": auth, "X-Api-Token": token, "X-Team": "data"}


def assert_nowhere(text: str, *values: str) -> None:
    for value in values:
        assert value not in text, f"a secret leaked: {text[:400]}"


def logs_mentioning(*values: str) -> list[str]:
    found = []
    for log in sorted(LOGS.glob("*.log")):
        content = log.read_text(errors="replace")
        found += [f"{log.name}: {v}" for v in values if v in content]
    return found


async def hit_after(sink: Sink, path: str, since: float) -> Hit:
    async def check() -> Hit | None:
        return next((h for h in sink.hits_for(path) if h.received_at > since), None)

    return await eventually(check, timeout=20)


async def test_reads_show_the_marker_and_the_receiver_gets_the_value(
        api: httpx.AsyncClient, sink: Sink, path: str, jobs: Cleanup,
        pg: asyncpg.Pool[Any]) -> None:
    auth, token = planted()
    name = f"redaction-{uuid.uuid4().hex[:12]}"
    spec = http_job(sink.url(path), {"type": "interval", "every_seconds": 1}, name=name)
    spec["target"]["headers"] = secret_headers(auth, token)
    job_id = await jobs.create(api, spec)

    view = await api.get(f"/jobs/{job_id}")
    listing = await api.get("/jobs", params={"name": name})
    assert view.json()["target"]["headers"] == {
        "Authorization": REDACTED, "X-Api-Token": REDACTED, "X-Team": "data"}
    assert [j["target"]["headers"] for j in listing.json()["items"]] == \
        [view.json()["target"]["headers"]]
    assert_nowhere(view.text + listing.text, auth, token)
    [hit] = (await sink.wait_for(path))[:1]
    assert (hit.headers["Authorization"], hit.headers["X-Api-Token"]) == (auth, token)

    # GET, change, PUT back: the markers keep the stored values.
    job = view.json()
    edited = {k: job[k] for k in SPEC_FIELDS} | {"labels": {"edited": "yes"}}
    put_at = time.time()
    assert (await api.put(f"/jobs/{job_id}", json=edited)).status_code == 202
    await eventually(lambda: _version(api, job_id, 2), timeout=15)
    stored = await pg.fetchval("SELECT spec FROM jobs WHERE job_id = $1", job_id)
    assert orjson.loads(stored)["target"]["headers"] == secret_headers(auth, token)
    after = await hit_after(sink, path, put_at + 1.5)
    assert (after.headers["Authorization"], after.headers["X-Api-Token"]) == (auth, token)


async def _version(api: httpx.AsyncClient, job_id: str, version: int) -> bool:
    job = await get_job(api, job_id)
    return job is not None and job["version"] >= version


async def test_a_marker_with_nothing_stored_is_refused(
        api: httpx.AsyncClient, sink: Sink, path: str, jobs: Cleanup) -> None:
    spec = http_job(sink.url(path), {"type": "interval", "every_seconds": 3600})
    spec["target"]["headers"] = {"Authorization": REDACTED}
    created = await api.post("/jobs", json=spec)
    assert created.status_code == 422
    assert created.json()["errors"][0]["field"] == "target.headers"

    spec["target"]["headers"] = {"Authorization": "Bearer real"}
    job_id = await jobs.create(api, spec)
    spec["target"]["headers"] = {"Authorization": REDACTED, "X-Other-Secret": REDACTED}
    replaced = await api.put(f"/jobs/{job_id}", json=spec)
    assert replaced.status_code == 422
    assert "X-Other-Secret" in replaced.json()["errors"][0]["message"]
    patched = await api.patch(f"/jobs/{job_id}",
                              json={"target": {"headers": {"Cookie": REDACTED}}})
    assert patched.status_code == 422


async def test_rejected_commands_dead_letters_and_logs_do_not_echo_secrets(
        kafka_producer: AIOKafkaProducer, env: dict[str, str], sink: Sink, path: str) -> None:
    auth, token = planted()
    # Refused by validation twice over: a header value too long (it starts with the secret,
    # as a validation error would quote it) and an unknown field.
    headers = secret_headers(auth, token) | {"X-Api-Token": token + "x" * 9000}
    cmd = {"command_id": uuid.uuid4().hex, "tenant": "dev", "type": "create",
           "issued_at": datetime.now(UTC).isoformat(),
           "spec": {"name": "leaky", "schedule": {"type": "now"}, "bogus": True,
                    "target": {"type": "http", "url": sink.url(path), "headers": headers}}}
    key = uuid.uuid4().hex.encode()
    await kafka_producer.send_and_wait(JOB_COMMANDS, orjson.dumps(cmd), key=key)

    bootstrap = kafka_settings(env)
    [rejected] = await find_messages(bootstrap, JOB_EVENTS,
                                     lambda m: m.get("command_id") == cmd["command_id"])
    [letter] = await find_messages(bootstrap, JOB_COMMANDS_DLQ,
                                   lambda m: m.get("key") == key.decode())
    assert rejected["type"] == "job.rejected" and "bogus" in rejected["reason"]
    assert_nowhere(orjson.dumps([rejected, letter]).decode(), auth, token)
    kept = orjson.loads(letter["value"])["spec"]
    assert kept["target"]["headers"] == {
        "Authorization": REDACTED, "X-Api-Token": REDACTED, "X-Team": "data"}
    assert kept["bogus"] is True  # everything else of the original is still there
    await asyncio.sleep(0.5)  # the writer's log lines for it are written by now
    assert LOGS.is_dir() and logs_mentioning(auth, token) == []


async def test_a_failed_runs_dead_letter_does_not_echo_secrets(
        api: httpx.AsyncClient, env: dict[str, str], make_sink: Any, path: str,
        jobs: Cleanup) -> None:
    failing = await make_sink(status=500)
    auth, token = planted()
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    spec = http_job(failing.url(path), {"type": "once", "at": at}, retry={"max_attempts": 1})
    spec["target"]["headers"] = secret_headers(auth, token)
    job_id = await jobs.create(api, spec)
    [hit] = await failing.wait_for(path)
    assert hit.headers["Authorization"] == auth

    [letter] = await find_messages(kafka_settings(env), RUNS_DLQ,
                                   lambda m: m.get("key") == job_id)
    assert_nowhere(orjson.dumps(letter).decode(), auth, token)
    request = orjson.loads(letter["value"])
    assert request["target"]["headers"]["Authorization"] == REDACTED
    assert logs_mentioning(auth, token) == []



async def test_an_endpoint_echoing_its_request_does_not_leak_into_run_history(
        api: httpx.AsyncClient, make_sink: Any, path: str, jobs: Cleanup) -> None:
    auth, token = planted()
    echo = await make_sink(answer_for=lambda hit: orjson.dumps(
        {str(k): v for k, v in hit.headers.items()}).decode())
    at = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    spec = http_job(echo.url(path), {"type": "once", "at": at})
    spec["target"] |= {"headers": secret_headers(auth, token), "store_response": True}
    job_id = await jobs.create(api, spec)
    await echo.wait_for(path)

    [run] = await wait_runs(api, job_id, "succeeded")
    assert "X-Team" in run["response_excerpt"]  # the echo is kept, its secrets are not
    assert_nowhere(orjson.dumps(run).decode(), auth, token, auth.split(" ")[1])
    assert REDACTED in run["response_excerpt"]
