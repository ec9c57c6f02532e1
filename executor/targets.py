"""Fires one attempt at its target: an HTTP call (aiohttp, see ADR 0004) or a Kafka message."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from duetime.kafka_targets import TopicPolicy
from duetime.timeutil import iso
from executor.outcome import Outcome, is_success
from schemas.api import HttpTarget, KafkaTarget, storable_text
from schemas.events import RunRequested

EXCERPT_BYTES = 1024


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


async def fire_http(session: aiohttp.ClientSession, req: RunRequested,
                    target: HttpTarget) -> Outcome:
    headers = http_headers(req, target)
    data, content_type = http_body(target)
    if content_type and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = content_type
    timeout = aiohttp.ClientTimeout(total=target.timeout_seconds)
    try:
        async with session.request(target.method, target.url, headers=headers, data=data,
                                   timeout=timeout, allow_redirects=False) as resp:
            # The answer is any bytes: keep what is valid text, replace what cannot be stored.
            excerpt = storable_text((await resp.content.read(EXCERPT_BYTES)).decode(errors="replace"))
            if is_success(resp.status, target.success_codes):
                return Outcome("succeeded", resp.status, None, excerpt)
            return Outcome("failed", resp.status, f"HTTP {resp.status}", excerpt)
    except TimeoutError:
        return Outcome("timed_out", None, f"no response within {target.timeout_seconds:g}s")
    except Exception as exc:
        # Whatever one call raises (aiohttp, the network, an odd answer) ends this attempt as
        # failed; it must never escape and hold up the executor's offsets.
        return Outcome("failed", None, f"{type(exc).__name__}: {exc}"[:2000])


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
    headers = [(k, v.encode()) for k, v in target.headers.items()]
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
        return Outcome("failed", None, f"{type(exc).__name__}: {exc}"[:2000])
    return Outcome("succeeded")
