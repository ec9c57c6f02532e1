"""Issue 7 hole 6: a job can no longer hold executor slots for an hour, hammer a receiver with
retries, or copy a huge target into Redis and every run request — through the gateway and
through Kafka ingress, on the running stack with its default limits (docs/quotas.md):
timeout ≤ 60 s, backoff ≥ 1 s, ≤ 20 attempts, target ≤ 64 KiB.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from schemas.topics import JOB_COMMANDS, JOB_EVENTS
from tests.support.jobs import Cleanup, get_job
from tests.support.kafka import find_messages, kafka_settings
from tests.support.problems import problem

URL = "http://127.0.0.1:18999/never-called"


def spec(**extra: Any) -> dict[str, Any]:
    return {"name": f"limits-{uuid.uuid4().hex[:8]}", "schedule": {"type": "delay", "seconds": 86400},
            "target": {"type": "http", "url": URL}, **extra}


def fields(resp: httpx.Response) -> list[str]:
    return [e["field"] for e in problem(resp, 422)["errors"]]


@pytest.mark.parametrize(("change", "field"), [
    ({"target": {"type": "http", "url": URL, "timeout_seconds": 3600}}, "target.timeout_seconds"),
    ({"target": {"type": "http", "url": URL, "timeout_seconds": 60.5}}, "target.timeout_seconds"),
    ({"retry": {"max_attempts": 100, "initial_delay_seconds": 1}}, "retry.max_attempts"),
    ({"retry": {"max_attempts": 3, "initial_delay_seconds": 0}}, "retry.initial_delay_seconds"),
    ({"retry": {"max_attempts": 3, "initial_delay_seconds": 0.5}}, "retry.initial_delay_seconds"),
    ({"retry": {"max_attempts": 3, "max_delay_seconds": 0.1}}, "retry.max_delay_seconds"),
    ({"target": {"type": "http", "url": URL, "body": "x" * (200 * 1024)}}, "target"),
])
async def test_a_job_beyond_the_limits_is_refused_on_create(
    api: httpx.AsyncClient, change: dict[str, Any], field: str,
) -> None:
    body = spec(**change)

    resp = await api.post("/jobs", json=body)

    assert fields(resp) == [field]
    listed = await api.get("/jobs", params={"name": body["name"]})
    assert listed.json()["items"] == []


async def test_the_limits_themselves_are_allowed(api: httpx.AsyncClient, jobs: Cleanup) -> None:
    body = spec(target={"type": "http", "url": URL, "timeout_seconds": 60,
                        "body": "x" * (60 * 1024)},
                retry={"max_attempts": 20, "initial_delay_seconds": 1, "max_delay_seconds": 1})
    job_id = await jobs.create(api, body)
    assert job_id
    # A job that never retries may keep a zero backoff: it is never used.
    assert await jobs.create(api, spec(retry={"max_attempts": 1, "initial_delay_seconds": 0}))


async def test_put_and_patch_cannot_raise_a_job_past_the_limits(
    api: httpx.AsyncClient, jobs: Cleanup,
) -> None:
    job_id = await jobs.create(api, spec())

    put = await api.put(f"/jobs/{job_id}", json=spec(
        target={"type": "http", "url": URL, "timeout_seconds": 3600}))
    patched_timeout = await api.patch(f"/jobs/{job_id}",
                                      json={"target": {"timeout_seconds": 3600}})
    patched_retry = await api.patch(f"/jobs/{job_id}", json={
        "retry": {"max_attempts": 100, "initial_delay_seconds": 0}})

    assert fields(put) == ["target.timeout_seconds"]
    assert fields(patched_timeout) == ["target.timeout_seconds"]
    assert sorted(fields(patched_retry)) == ["retry.initial_delay_seconds", "retry.max_attempts"]
    job = await get_job(api, job_id)
    assert job is not None and job["version"] == 1
    assert job["target"]["timeout_seconds"] == 30 and job["retry"]["max_attempts"] == 3


async def test_kafka_ingress_commands_beyond_the_limits_are_rejected(
    kafka_producer: AIOKafkaProducer, env: dict[str, str], api: httpx.AsyncClient,
) -> None:
    job_id = uuid.uuid4().hex
    cmd = {"command_id": uuid.uuid4().hex, "tenant": "dev", "type": "create", "job_id": job_id,
           "issued_at": datetime.now(UTC).isoformat(),
           "spec": spec(target={"type": "http", "url": URL, "timeout_seconds": 3600},
                        retry={"max_attempts": 3, "initial_delay_seconds": 0})}

    await kafka_producer.send_and_wait(JOB_COMMANDS, orjson.dumps(cmd), key=job_id.encode())

    outcome = (await find_messages(kafka_settings(env), JOB_EVENTS,
                                   lambda m: m.get("command_id") == cmd["command_id"]))[0]
    assert outcome["type"] == "job.rejected"
    assert "target.timeout_seconds" in outcome["reason"]
    assert "retry.initial_delay_seconds" in outcome["reason"]
    assert (await api.get(f"/jobs/{job_id}")).status_code == 404
