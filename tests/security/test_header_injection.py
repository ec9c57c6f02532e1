"""Hole 4, header injection: a job's headers could set Host, framing (a user
`Transfer-Encoding: chunked` went out beside the client's `Content-Length`: request smuggling),
hop-by-hop and proxy headers, and duetime's own run identity and signature headers. Now each is
a 422 naming it, and a job stored before (here: through the Kafka command topic, which the job
service does not guard) still never sends one.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from schemas.topics import JOB_COMMANDS
from tests.support.jobs import Cleanup, http_job
from tests.support.sink import start_raw_server
from tests.support.waiting import eventually

DENIED = ["Host", "Transfer-Encoding", "Content-Length", "Connection", "Upgrade", "Keep-Alive",
          "TE", "Trailer", "Proxy-Authorization", "Proxy-Connection", "X-Duetime-Tenant",
          "X-Duetime-Run-Id", "x-duetime-anything", "Idempotency-Key", "webhook-id",
          "webhook-timestamp", "webhook-signature", "tRaNsFeR-eNcOdInG", "HOST"]
LATER = {"type": "once", "at": "2099-01-01T00:00:00Z"}


def _problem_fields(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in resp.json()["errors"]]


@pytest.mark.parametrize("name", DENIED)
async def test_each_denied_header_is_a_422_naming_it(api: httpx.AsyncClient, name: str) -> None:
    spec = http_job("http://127.0.0.1:18950/x", LATER)
    spec["target"]["headers"] = {"X-Fine": "yes", name: "1"}
    resp = await api.post("/jobs", json=spec)
    assert _problem_fields(resp) == [f"target.headers.{name}"]
    assert name in resp.json()["errors"][0]["message"]


async def test_put_and_patch_refuse_them_too(api: httpx.AsyncClient, jobs: Cleanup) -> None:
    spec = http_job("http://127.0.0.1:18950/x", LATER)
    job_id = await jobs.create(api, spec)
    put = {**spec, "target": {**spec["target"], "headers": {"Transfer-Encoding": "chunked"}}}
    assert _problem_fields(await api.put(f"/jobs/{job_id}", json=put)) == \
        ["target.headers.Transfer-Encoding"]
    patch = {"target": {"headers": {"Connection": "Upgrade"}}}
    assert _problem_fields(await api.patch(f"/jobs/{job_id}", json=patch)) == \
        ["target.headers.Connection"]
    assert (await api.patch(f"/jobs/{job_id}", json={"name": "still fine"})).status_code == 202


async def test_kafka_targets_may_not_set_duetime_headers(api: httpx.AsyncClient) -> None:
    spec = {"name": "k", "schedule": LATER,
            "target": {"type": "kafka", "topic": "tenant.topic", "headers": {"Duetime-Run-Id": "x"}}}
    assert _problem_fields(await api.post("/jobs", json=spec)) == ["target.headers.Duetime-Run-Id"]


class RawSink:
    """Records each request's bytes exactly as they arrived on the socket."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> RawSink:
        self.server, self.port = await start_raw_server(self._handle)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            # Whatever framing was sent, take what arrives within a moment: a smuggled
            # request would be there too.
            rest = b""
            with contextlib.suppress(TimeoutError):
                rest = await asyncio.wait_for(reader.read(65536), timeout=0.3)
            self.requests.append(head + rest)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def raw_sink() -> AsyncIterator[RawSink]:
    sink = await RawSink().start()
    yield sink
    assert sink.server is not None
    sink.server.close()


def _headers(request: bytes) -> list[tuple[str, str]]:
    lines = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return [(k.strip().lower(), v.strip()) for k, v in (line.split(":", 1) for line in lines)]


async def test_a_stored_job_with_denied_headers_never_sends_them(
    kafka_producer: AIOKafkaProducer, raw_sink: RawSink,
) -> None:
    forged = {"Transfer-Encoding": "chunked", "Content-Length": "5", "Host": "internal.example",
              "Connection": "keep-alive, Upgrade", "Proxy-Authorization": "Basic eA==",
              "X-Duetime-Run-Id": "forged", "Idempotency-Key": "forged", "X-Kept": "yes"}
    marker = uuid.uuid4().hex
    cmd: dict[str, Any] = {
        "command_id": uuid.uuid4().hex, "type": "create", "tenant": "dev",
        "issued_at": datetime.now(UTC).isoformat(),
        "spec": {"name": "stored-before", "schedule": {"type": "now"},
                 "target": {"type": "http", "url": f"http://127.0.0.1:{raw_sink.port}/{marker}",
                            "headers": forged, "body": "hello", "timeout_seconds": 5},
                 "retry": {"max_attempts": 1}}}
    await kafka_producer.send_and_wait(JOB_COMMANDS, orjson.dumps(cmd), key=marker.encode())

    async def arrived() -> list[bytes]:
        return [r for r in raw_sink.requests if marker.encode() in r.split(b"\r\n", 1)[0]]

    [request] = await eventually(arrived, timeout=20)
    headers = _headers(request)
    names = [k for k, _ in headers]
    # One framing header, the client's: no Transfer-Encoding beside a Content-Length.
    assert names.count("content-length") + names.count("transfer-encoding") == 1, request
    assert dict(headers).get("content-length") == "5" and request.endswith(b"\r\n\r\nhello")
    assert [v for k, v in headers if k == "host"] == [f"127.0.0.1:{raw_sink.port}"]
    assert "proxy-authorization" not in names and "upgrade" not in dict(headers).get(
        "connection", "").lower()
    assert dict(headers)["x-duetime-run-id"] != "forged"
    assert dict(headers)["idempotency-key"] != "forged"
    assert names.count("x-duetime-run-id") == 1 and dict(headers)["x-kept"] == "yes"
