"""Fires one attempt at its target: an HTTP call (aiohttp, see ADR 0004) or a Kafka message."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from yarl import URL

from duetime.kafka_targets import TopicPolicy
from duetime.timeutil import iso
from executor.egress import (
    RESOLVING_FOR,
    EgressBlocked,
    EgressPolicy,
    GuardedResolver,
    blocked_reason,
)
from executor.fair_share import ConnectionSlots
from executor.outcome import Outcome, is_success
from schemas.api import (
    HEADER_VALUE_MAX_CHARS,
    RESPONSE_EXCERPT_BYTES,
    HttpTarget,
    KafkaTarget,
    is_denied_http_header,
    is_denied_kafka_header,
    storable_text,
)
from schemas.events import RunRequested

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpCalls:
    """What every HTTP call shares: the client, where it may connect, its connection slots
    and the longest a call may take whatever its job asks (DUETIME_MAX_TIMEOUT_SECONDS)."""

    session: aiohttp.ClientSession
    egress: EgressPolicy
    connections: ConnectionSlots
    max_timeout_seconds: float
    # The session's own resolver (executor.egress.resolver_of): without it, slots are per name.
    resolver: GuardedResolver | None = None

    async def slot_key(self, url: URL) -> tuple[str, str, int]:
        """Whose connection slots a call to `url` takes: its host's address, so that many names
        for one server share that server's cap (ADR 0062). The connector then finds the same
        answer in the resolver's memo. A name that does not resolve keeps its own slots, and
        the connector's lookup reports why; a name whose every address is blocked raises."""
        literal = literal_key(url)
        if literal is not None:
            return literal
        host, port = url.raw_host or "", url.port or 0
        if self.resolver is None:
            return url.scheme, host, port
        try:
            found = await self.resolver.resolve(host, port, socket.AF_UNSPEC)
        except EgressBlocked:
            raise
        except OSError:
            return url.scheme, host, port
        if not found:
            return url.scheme, host, port
        return url.scheme, _address(found[0]["host"]) or host, port


def literal_key(url: URL) -> tuple[str, str, int] | None:
    """The slot key of a URL whose host is an address, in one spelling per address; None for
    a name."""
    address = _address(url.raw_host or "")
    return None if address is None else (url.scheme, address, url.port or 0)


@functools.lru_cache(maxsize=4096)
def _address(host: str) -> str | None:
    """`host`'s one spelling if it is an IP address (parsing one costs ~3 µs, on every call of
    the firing path; a few thousand hosts are remembered)."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return None


def without_denied_headers(target: HttpTarget) -> HttpTarget:
    """`target` without the headers a job may not set; a job stored before the deny-list was
    enforced at validation keeps being readable, but never sends them."""
    if not any(is_denied_http_header(name) for name in target.headers):
        return target
    headers = {k: v for k, v in target.headers.items() if not is_denied_http_header(k)}
    return target.model_copy(update={"headers": headers})


def http_headers(req: RunRequested, target: HttpTarget) -> dict[str, str]:
    headers = dict(target.headers)
    headers.update({
        "Idempotency-Key": req.run_id,
        "X-Duetime-Job-Id": req.job_id,
        "X-Duetime-Run-Id": req.run_id,
        "X-Duetime-Scheduled-At": iso(req.scheduled_at) or "",
        "X-Duetime-Attempt": str(req.attempt),
    })
    return headers


def http_body(target: HttpTarget) -> tuple[bytes | None, str | None]:
    if target.body is None:
        return None, None
    if isinstance(target.body, str):
        return target.body.encode(), "text/plain; charset=utf-8"
    return orjson.dumps(target.body), "application/json"


async def fire_http(calls: HttpCalls, req: RunRequested, target: HttpTarget) -> Outcome:
    headers = http_headers(req, target)
    data, content_type = http_body(target)
    if content_type and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = content_type
    seconds = min(target.timeout_seconds, calls.max_timeout_seconds)
    url = URL(target.url)
    RESOLVING_FOR.set(req.tenant)  # this attempt's task: its name lookups count as the tenant's
    try:
        calls.egress.check_url(target.url)
        loop = asyncio.get_running_loop()
        left = seconds
        key = literal_key(url)
        if key is None:
            # The lookup is part of the call, as when the connector made it: it counts against
            # the job's timeout; waiting for the slot does not.
            looked_up = loop.time()
            async with asyncio.timeout(seconds):
                key = await calls.slot_key(url)
            left = max(seconds - (loop.time() - looked_up), 0.001)
        async with calls.connections.slot(key):
            # The call's clock starts here, once it has its connection slot: waiting for a
            # busy host or a full pool does not eat the job's timeout.
            timeout = aiohttp.ClientTimeout(total=left)
            deadline = loop.time() + left
            async with calls.session.request(target.method, target.url, headers=headers, data=data,
                                             timeout=timeout, allow_redirects=False) as resp:
                return await _answer(resp, target, deadline)
    except TimeoutError:
        return Outcome("timed_out", None, f"no response within {seconds:g}s")
    except Exception as exc:
        # Whatever one call raises (aiohttp, the network, an odd answer) ends this attempt as
        # failed; it must never escape and hold up the executor's offsets. What is stored is
        # short and generic: the exception's text could echo internal addresses or answers.
        return _call_failed(req, exc)


# How long before the call's own deadline the excerpt stops waiting for more of the body, so
# that its timer, not aiohttp's, ends the read.
_BODY_MARGIN_SECONDS = 0.05


async def _answer(resp: aiohttp.ClientResponse, target: HttpTarget, deadline: float) -> Outcome:
    excerpt = None
    if target.store_response:
        # The answer is any bytes: keep what is valid text, replace what cannot be stored.
        # Read past the excerpt's size by the longest header value a job may send (4 bytes a
        # character at most): a secret the answer echoes across the cut is scrubbed whole
        # (executor.service.without_secrets) before `cut_excerpt` cuts it to size.
        raw = await _body_head(resp, RESPONSE_EXCERPT_BYTES + 4 * HEADER_VALUE_MAX_CHARS,
                               deadline - _BODY_MARGIN_SECONDS)
        excerpt = storable_text(raw.decode(errors="replace"))
    if is_success(resp.status, target.success_codes):
        return Outcome("succeeded", resp.status, None, excerpt)
    return Outcome("failed", resp.status, f"HTTP {resp.status}", excerpt)


async def _body_head(resp: aiohttp.ClientResponse, size: int, deadline: float) -> bytes:
    """The body's first `size` bytes, or all of it if shorter. One read gives what has arrived,
    which for a body sent in pieces was only its first piece. A body still arriving at the
    call's deadline gives what came: its status came in time, so the outcome stands (a secret
    echoed across where it stopped is scrubbed by schemas.redaction.scrub_echo)."""
    pieces: list[bytes] = []
    have = 0
    try:
        async with asyncio.timeout_at(deadline):
            while have < size:
                piece = await resp.content.read(size - have)
                if not piece:
                    break
                pieces.append(piece)
                have += len(piece)
    except TimeoutError:
        pass
    return b"".join(pieces)


def cut_excerpt(text: str | None) -> str | None:
    """An excerpt as stored: at most RESPONSE_EXCERPT_BYTES of UTF-8, no character cut in two.
    Cut after its secrets were scrubbed, never before (see `_answer`)."""
    if text is None:
        return None
    return text.encode()[:RESPONSE_EXCERPT_BYTES].decode(errors="ignore")


def _call_failed(req: RunRequested, exc: Exception) -> Outcome:
    blocked = blocked_reason(exc)
    log.info("call failed", extra={"run_id": req.run_id, "job_id": req.job_id,
                                   "attempt": req.attempt, "error": repr(exc)[:500]})
    if blocked is not None:
        return Outcome("failed", None, str(EgressBlocked(blocked)), retryable=False)
    return Outcome("failed", None, call_error(exc))


def call_error(exc: Exception) -> str:
    """A short, generic text for a failed call, safe to show to the job's tenant."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "DNS lookup failed"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "TLS error"
    if isinstance(exc, aiohttp.ClientConnectorError):
        refused = isinstance(exc.os_error, ConnectionRefusedError)
        return "connection refused" if refused else "connection failed"
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError):
        return "connection closed by the target"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        return "invalid response"
    if isinstance(exc, aiohttp.InvalidURL):
        return "invalid URL"
    return "request failed"


async def fire_kafka(producer: AIOKafkaProducer | None, topics: TopicPolicy, req: RunRequested,
                     target: KafkaTarget) -> Outcome:
    # Checked again at fire time: the job may predate the tenant's current allowlist, or have
    # reached the due-set some other way than through the job service's validation.
    refusal = topics.refusal(req.tenant, target.topic)
    if refusal is None and producer is None:
        refusal = "this executor has no Kafka target credentials (DUETIME_KAFKA_TARGET_USERNAME)"
    if refusal is not None or producer is None:
        return Outcome("failed", None, f"refused by the Kafka target policy: {refusal}",
                       retryable=False)
    value: Any = target.value
    payload = value.encode() if isinstance(value, str) else orjson.dumps(value)
    # Headers named duetime-* are ours: a job stored before that was refused never sends one.
    headers = [(k, v.encode()) for k, v in target.headers.items() if not is_denied_kafka_header(k)]
    headers += [("duetime-run-id", req.run_id.encode()), ("duetime-job-id", req.job_id.encode())]
    try:
        await producer.send_and_wait(target.topic, payload,
                                     key=target.key.encode() if target.key else None,
                                     headers=headers)
    except TopicAuthorizationFailedError as exc:
        # Kafka's ACLs refused the target principal: retrying cannot change that.
        return Outcome("failed", None, f"refused by Kafka: {type(exc).__name__}: {exc}"[:2000],
                       retryable=False)
    except (TimeoutError, KafkaError) as exc:
        log.info("message not sent", extra={"run_id": req.run_id, "job_id": req.job_id,
                                            "error": repr(exc)[:500]})
        return Outcome("failed", None, f"Kafka did not take the message ({type(exc).__name__})")
    return Outcome("succeeded")
