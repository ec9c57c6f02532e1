"""Signs every HTTP call with the tenant's secrets (Standard Webhooks; API.md, ADR 0019).

Firing must not wait for Postgres: the secrets are held in memory and reloaded every couple of
seconds by a background task, which keeps the last ones it read while Postgres is away. A new
or deleted secret therefore applies to calls made from the next reload on (at most
`refresh_seconds` plus a query later). The executor does not start consuming before its first
load succeeded, so a call is never unsigned for want of having read the secrets.
A tenant without secrets gets unsigned calls (they still carry `Idempotency-Key`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import asyncpg
from prometheus_client import Gauge

from duetime.lifecycle import Lifecycle
from duetime.sql import load_queries
from duetime.webhook_signing import key_of, signature
from executor.targets import http_body
from schemas.api import HttpTarget
from schemas.events import RunRequested

log = logging.getLogger(__name__)
QUERIES = load_queries("executor", "signing.sql")
LOADED_AT = Gauge("duetime_executor_signing_secrets_loaded_timestamp_seconds",
                  "When the signing secrets were last read from Postgres")
# Ours to set: a tenant's own header of these names would contradict the signature.
SIGNING_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


class SigningKeys:
    """Each tenant's signing keys, newest first, as last read from Postgres."""

    def __init__(self) -> None:
        self.by_tenant: dict[str, list[bytes]] = {}
        self.loaded = False

    def replace(self, rows: list[asyncpg.Record] | list[dict[str, Any]]) -> None:
        by_tenant: dict[str, list[bytes]] = {}
        for row in rows:
            by_tenant.setdefault(row["tenant"], []).append(key_of(row["secret"]))
        self.by_tenant, self.loaded = by_tenant, True

    def sign(self, req: RunRequested, target: HttpTarget, now: float | None = None) -> HttpTarget:
        """`target` with the signature headers of this call added, when the tenant has keys.

        The body signed is `http_body(target)`, the function `fire_http` sends it with, so
        the signature covers exactly the bytes sent.
        """
        if not self.by_tenant.get(req.tenant):
            return target
        body, _ = http_body(target)
        headers = self.signed(req.tenant, req.run_id, body or b"", target.headers, now)
        return target.model_copy(update={"headers": headers})

    def signed(self, tenant: str, msg_id: str, body: bytes, headers: Mapping[str, str],
               now: float | None = None) -> dict[str, str]:
        """`headers` with the signature headers of a message `msg_id` of `tenant` whose body
        is `body` (the same headers, untouched, when the tenant has no keys)."""
        keys = self.by_tenant.get(tenant)
        if not keys:
            return dict(headers)
        timestamp = int(time.time() if now is None else now)
        sigs = " ".join(signature(k, msg_id, timestamp, body) for k in keys)
        out = {k: v for k, v in headers.items() if k.lower() not in SIGNING_HEADERS}
        out.update({"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                    "webhook-signature": sigs})
        return out


async def load(keys: SigningKeys, pool: asyncpg.Pool[Any]) -> None:
    keys.replace(await pool.fetch(QUERIES["signing_secrets"], timeout=5))
    LOADED_AT.set_to_current_time()


async def first_load(keys: SigningKeys, pool: asyncpg.Pool[Any], lifecycle: Lifecycle) -> bool:
    """Load until it works (or the service is told to stop: False)."""
    while True:
        try:
            await load(keys, pool)
            return True
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.warning("signing secrets not loaded yet; not consuming until they are",
                        extra={"error": repr(exc)})
        if await lifecycle.sleep(1.0):
            return False


async def keep_loaded(keys: SigningKeys, pool: asyncpg.Pool[Any], lifecycle: Lifecycle,
                      refresh_seconds: float) -> None:
    """Reload every `refresh_seconds`; through a Postgres outage the last keys stay in use."""
    while not await lifecycle.sleep(refresh_seconds):
        try:
            await load(keys, pool)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            log.warning("signing secrets not reloaded; keeping the last ones",
                        extra={"error": repr(exc)})
