"""One HTTP call of the executor (executor.targets.fire_http) against a local server: the
timeout cap, the opt-in excerpt, generic errors, egress refusals that are never retried, the
connection wait kept off the call's clock, and denied headers dropped from stored jobs."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import ResolveResult
from aiohttp.resolver import ThreadedResolver

from duetime.logs import JsonFormatter
from executor.egress import (
    DNS_CACHE_SECONDS,
    RESOLVING_FOR,
    EgressBlocked,
    EgressPolicy,
    GuardedResolver,
    client_session,
    resolver_of,
)
from executor.fair_share import ConnectionSlots
from executor.outcome import Outcome, should_retry
from executor.service import without_secrets
from executor.targets import HttpCalls, call_error, cut_excerpt, fire_http, without_denied_headers
from schemas.api import RESPONSE_EXCERPT_BYTES, HttpTarget, RetryPolicy
from schemas.events import RunRequested

LOOPBACK = EgressPolicy.parse("127.0.0.1/32")


@asynccontextmanager
async def _serving(answer: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> AsyncIterator[str]:
    """`answer` served on a free loopback port: its URL."""
    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("sleep", "0")))
        return web.Response(text="abcdef" * 400)  # 2,400 bytes: more than an excerpt keeps

    async with _serving(answer) as url:
        yield url


def _calls(policy: EgressPolicy = LOOPBACK, max_timeout: float = 60,
           slots: ConnectionSlots | None = None) -> HttpCalls:
    session = client_session(policy, 10, 10)
    return HttpCalls(session, policy, slots or ConnectionSlots(10, 10), max_timeout,
                     resolver_of(session))


def _req(url: str, **target: Any) -> tuple[RunRequested, HttpTarget]:
    now = datetime.now(UTC)
    spec = HttpTarget(type="http", url=url, method="GET", **target)
    req = RunRequested(run_id="r1", job_id="j1", tenant="t", job_version=1, scheduled_at=now,
                       due_at=now, attempt=1, priority=5, target=spec,
                       retry=RetryPolicy(max_attempts=3), member="m", dispatched_at=now)
    return req, spec


async def test_the_timeout_is_capped_at_fire_time(server: str) -> None:
    calls = _calls(max_timeout=0.3)
    req, target = _req(f"{server}?sleep=2", timeout_seconds=30)
    async with calls.session:
        outcome = await asyncio.wait_for(fire_http(calls, req, target), timeout=3)
    assert (outcome.status, outcome.error) == ("timed_out", "no response within 0.3s")


async def _stored(calls: HttpCalls, req: RunRequested, target: HttpTarget) -> Outcome:
    """The outcome of one call as the executor stores it (its secrets scrubbed, then cut)."""
    return without_secrets(await fire_http(calls, req, target), req)


async def test_excerpts_are_opt_in_and_bounded(server: str) -> None:
    calls = _calls()
    async with calls.session:
        none = await _stored(calls, *_req(server))
        stored = await _stored(calls, *_req(server, store_response=True))
    assert (none.status, none.excerpt) == ("succeeded", None)
    assert (stored.status, stored.excerpt) == ("succeeded", ("abcdef" * 400)[:RESPONSE_EXCERPT_BYTES])


async def test_a_secret_echoed_across_the_excerpts_end_is_scrubbed_whole() -> None:
    secret = "Bearer sk_live_ABCDEFGHIJKLMNOP"

    async def echo(request: web.Request) -> web.Response:
        # The secret starts 10 bytes before the excerpt's end and runs past it.
        return web.Response(text="x" * (RESPONSE_EXCERPT_BYTES - 10) + request.headers["Authorization"]
                            + "y" * 100)

    calls = _calls()
    async with _serving(echo) as url, calls.session:
        stored = await _stored(calls, *_req(url, store_response=True,
                                            headers={"Authorization": secret}))
    assert stored.excerpt is not None
    assert "sk_live" not in stored.excerpt, stored.excerpt[-40:]
    assert stored.excerpt.startswith("x" * (RESPONSE_EXCERPT_BYTES - 10))
    assert "<redacted>" in stored.excerpt
    assert len(stored.excerpt.encode()) <= RESPONSE_EXCERPT_BYTES


def _in_pieces(pieces: list[str], stall: asyncio.Event | None = None) -> Callable[
        [web.Request], Awaitable[web.StreamResponse]]:
    """An answer whose body is written in `pieces` 50 ms apart (then, with `stall`, nothing
    more until it is set)."""
    async def answer(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for piece in pieces:
            await resp.write(piece.format(secret=request.headers.get("Authorization", "")).encode())
            await asyncio.sleep(0.05)
        if stall is not None:
            await stall.wait()
        return resp
    return answer


async def test_an_excerpt_waits_for_a_body_sent_in_pieces() -> None:
    # One read gave what had arrived: the first 300 bytes.
    calls = _calls()
    async with _serving(_in_pieces(["a" * 300, "b" * 300, "c" * 300, "d" * 300])) as url, \
            calls.session:
        stored = await _stored(calls, *_req(url, store_response=True))
    assert stored.status == "succeeded"
    assert stored.excerpt == ("a" * 300 + "b" * 300 + "c" * 300 + "d" * 300)[:RESPONSE_EXCERPT_BYTES]


async def test_a_body_that_never_ends_keeps_its_status_and_what_came_of_it() -> None:
    secret = "Bearer sk_live_ABCDEFGHIJKLMNOP"
    calls = _calls()
    # The answer echoes the first 20 characters of the secret, then stops sending.
    stall = asyncio.Event()
    async with _serving(_in_pieces(["ok ", "{secret:.20}"], stall)) as url, calls.session:
        started = asyncio.get_running_loop().time()
        stored = await _stored(calls, *_req(url, store_response=True, timeout_seconds=1,
                                            headers={"Authorization": secret}))
        took = asyncio.get_running_loop().time() - started
        stall.set()
    assert (stored.status, stored.http_status) == ("succeeded", 200)
    assert stored.excerpt == "ok <redacted>"
    assert 0.8 < took < 2


def test_an_excerpt_is_cut_on_a_character_boundary() -> None:
    cut = cut_excerpt("é" * RESPONSE_EXCERPT_BYTES)  # 2 bytes each
    assert cut == "é" * (RESPONSE_EXCERPT_BYTES // 2)
    assert cut_excerpt(None) is None


async def test_a_blocked_call_is_never_retried_and_a_refused_one_is(server: str) -> None:
    calls = _calls(EgressPolicy())
    policy = RetryPolicy(max_attempts=3)
    async with calls.session:
        blocked = await fire_http(calls, *_req(server))
    assert blocked.error == "blocked by egress policy: loopback address"
    assert not should_retry(blocked, 1, policy)

    calls = _calls()
    async with calls.session:
        refused = await fire_http(calls, *_req("http://127.0.0.1:1/"))
    assert refused.error == "connection refused" and should_retry(refused, 1, policy)


async def test_waiting_for_a_connection_does_not_eat_the_timeout(server: str) -> None:
    slots = ConnectionSlots(total=1, per_host=1)
    calls = _calls(max_timeout=0.5, slots=slots)
    req, target = _req(f"{server}?sleep=0.3")
    async with calls.session:
        first = asyncio.create_task(fire_http(calls, req, target))
        second = asyncio.create_task(fire_http(calls, req, target))  # waits ~0.3 s for a slot
        outcomes = await asyncio.gather(first, second)
    assert [o.status for o in outcomes] == ["succeeded", "succeeded"]


def test_errors_are_generic() -> None:
    assert call_error(ValueError("secret internal detail 10.0.0.7")) == "request failed"
    assert call_error(ConnectionResetError()) == "connection closed by the target"


def test_denied_headers_are_dropped_from_stored_targets() -> None:
    stored = HttpTarget(type="http", url="http://example.com/", headers={
        "transfer-ENCODING": "chunked", "Host": "internal", "X-Duetime-Run-Id": "forged",
        "Proxy-Authorization": "x", "webhook-signature": "v1,forged", "X-Kept": "1"})
    assert without_denied_headers(stored).headers == {"X-Kept": "1"}
    clean = HttpTarget(type="http", url="http://example.com/", headers={"X-Kept": "1"})
    assert without_denied_headers(clean) is clean


async def test_a_malformed_answer_logs_no_secret_header_of_the_call(
        caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp's error for a broken answer (here 200 headers, past its limit of 128) quotes the
    request's headers in its repr; the `call failed` log line must not carry their secrets."""
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
                     + b"Content-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(broken, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    calls = _calls()
    req, target = _req(f"http://127.0.0.1:{port}/",
                       headers={"Authorization": "Bearer TOPSECRET-123", "X-Team": "visible"})
    with caplog.at_level(logging.INFO, logger="executor.targets"):
        async with calls.session:
            outcome = await fire_http(calls, req, target)
    server.close()
    await server.wait_closed()
    assert outcome.error == "invalid response"
    lines = [JsonFormatter().format(r) for r in caplog.records if r.getMessage() == "call failed"]
    assert len(lines) == 1
    assert "TOPSECRET" not in lines[0], lines[0]
    assert "Authorization" in lines[0] or "invalid" in lines[0]


async def test_a_calls_name_lookups_count_as_its_tenants(server: str) -> None:
    """The per-tenant cap on lookups in flight (executor.egress.GuardedResolver) knows whose
    lookup it is through aiohttp's own connector, which resolves in a task of its own."""
    calls = _calls()
    guarded = calls.session.connector._resolver  # type: ignore[union-attr]
    assert isinstance(guarded, GuardedResolver)
    seen: list[str] = []

    class Recording(ThreadedResolver):
        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
            seen.append(RESOLVING_FOR.get())
            return await super().resolve(host, port, family)

    guarded.inner = Recording()
    req, target = _req(server.replace("127.0.0.1", "localhost"))
    async with calls.session:
        outcome = await fire_http(calls, req, target)
    assert outcome.status == "succeeded" and seen == [req.tenant]


async def test_names_of_one_address_share_its_connection_slots() -> None:
    """The per-host cap is the server's, not a name's (ADR 0062): `localhost` and `127.0.0.1`
    are one host, so with one slot per host their calls go one at a time."""
    in_flight, most = 0, 0

    async def answer(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.2)
        in_flight -= 1
        return web.Response(text="ok")

    calls = _calls(slots=ConnectionSlots(total=10, per_host=1))
    async with _serving(answer) as url, calls.session:
        by_name = _req(url.replace("127.0.0.1", "localhost"))
        outcomes = await asyncio.gather(*(fire_http(calls, *_req(url)) for _ in range(2)),
                                        *(fire_http(calls, *by_name) for _ in range(2)))
    assert [o.status for o in outcomes] == ["succeeded"] * 4
    assert most == 1


async def test_a_names_lookup_counts_against_the_calls_timeout() -> None:
    """The slot's key needs the name's address first; a lookup that hangs ends the attempt
    as `timed_out` at the job's timeout, as when the connector looked it up."""
    class Hanging(ThreadedResolver):
        async def resolve(self, host: str, port: int = 0,
                          family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
            await asyncio.sleep(30)
            return []

    calls = _calls(max_timeout=0.3)
    resolver = resolver_of(calls.session)
    assert resolver is not None
    resolver.inner = Hanging()
    async with calls.session:
        outcome = await asyncio.wait_for(fire_http(calls, *_req("http://hangs.example/")), 5)
    assert outcome.status == "timed_out" and outcome.error == "no response within 0.3s"


class _Counting(ThreadedResolver):
    def __init__(self, answers: dict[str, list[str]]) -> None:
        super().__init__()
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"no such name: {host}")
        return [ResolveResult(hostname=host, host=a, port=port, family=socket.AF_INET, proto=0,
                              flags=socket.AI_NUMERICHOST) for a in self.answers[host]]


async def test_the_resolvers_memo_keeps_answers_for_the_dns_cache_time_and_no_failure() -> None:
    now = [0.0]
    inner = _Counting({"a.example": ["8.8.8.8"], "private.example": ["10.0.0.1"]})
    resolver = GuardedResolver(EgressPolicy(), inner, memo_names=2, clock=lambda: now[0])
    for _ in range(3):
        assert [r["host"] for r in await resolver.resolve("a.example", 80)] == ["8.8.8.8"]
    assert inner.asked == ["a.example"]
    now[0] = DNS_CACHE_SECONDS + 1  # expired: looked up again
    await resolver.resolve("a.example", 80)
    assert inner.asked == ["a.example"] * 2
    for _ in range(2):  # refusals and failures are asked again each time
        with pytest.raises(EgressBlocked, match="private address"):
            await resolver.resolve("private.example", 80)
        with pytest.raises(OSError, match="no such name"):
            await resolver.resolve("missing.example", 80)
    assert inner.asked.count("private.example") == 2 and inner.asked.count("missing.example") == 2


async def test_the_resolvers_memo_is_bounded_oldest_first() -> None:
    inner = _Counting({f"n{i}.example": ["8.8.8.8"] for i in range(4)})
    resolver = GuardedResolver(EgressPolicy(), inner, memo_names=2)
    for i in (0, 1, 2):
        await resolver.resolve(f"n{i}.example", 80)
    await resolver.resolve("n2.example", 80)  # kept
    await resolver.resolve("n0.example", 80)  # the oldest, gone
    assert inner.asked == ["n0.example", "n1.example", "n2.example", "n0.example"]


@pytest.mark.parametrize(("answers", "error", "retryable"), [
    ({}, "DNS lookup failed", True),
    ({"name.example": ["10.0.0.1"]}, "blocked by egress policy: private address", False),
])
async def test_a_name_that_does_not_resolve_or_is_blocked_ends_the_attempt_as_before(
        answers: dict[str, list[str]], error: str, retryable: bool) -> None:
    """The slot's lookup changes no outcome: a name with no answer still fails as the
    connector reports it, and one whose every address is blocked is refused for good."""
    calls = _calls(EgressPolicy())
    resolver = resolver_of(calls.session)
    assert resolver is not None
    resolver.inner = _Counting(answers)
    async with calls.session:
        outcome = await fire_http(calls, *_req("http://name.example/"))
    assert (outcome.status, outcome.error) == ("failed", error)
    assert should_retry(outcome, 1, RetryPolicy(max_attempts=3)) is retryable
