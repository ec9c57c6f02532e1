"""The gateway's signed word for who is calling: the only source of a request's tenant.

nginx (deploy/local/gateway.js) sends every proxied request with
`X-Duetime-Assertion: v1:<tenant>:<request id>:<unix ms>:<base64url HMAC-SHA256>` and the same
request id as `X-Request-Id`. The MAC covers everything before its own `:` plus `:<HTTP method>`
(so a read's assertion cannot authorise a write). A service accepts the tenant only if the MAC
verifies under the shared gateway secret, the time is within the allowed skew, the request id
matches and this process has not seen that request id before (so a captured assertion cannot be
replayed at a service port while it is still fresh). See ADR 0017.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections import OrderedDict
from collections.abc import Callable

# Tenant names never contain a ':', so the fields split unambiguously.
from duetime.api_keys import TENANT

VERSION = "v1"
ASSERTION_HEADER = "X-Duetime-Assertion"
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# At the gateway's 2000 requests/s per tenant this covers minutes of ids; a flood beyond it only
# forgets the oldest, which are then older than any fresh assertion anyway at sane skews.
_MAX_REMEMBERED = 500_000


class AssertionRejected(Exception):
    """Why a request's assertion was not accepted (for the log; the client sees one 401)."""


def _mac(secret: bytes, signed: str) -> str:
    digest = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class TenantAssertions:
    def __init__(self, secret: str, max_age_seconds: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._secret = secret.encode()
        self._max_age_ms = int(max_age_seconds * 1000)
        self._clock = clock
        self._seen: OrderedDict[str, int] = OrderedDict()

    def sign(self, tenant: str, request_id: str, method: str, at_ms: int | None = None) -> str:
        """What the gateway sends; the services only use it in tests."""
        at = int(self._clock() * 1000) if at_ms is None else at_ms
        signed = f"{VERSION}:{tenant}:{request_id}:{at}"
        return f"{signed}:{_mac(self._secret, f'{signed}:{method}')}"

    def verify(self, assertion: str, request_id: str, method: str) -> str:
        """The tenant the gateway vouched for, or AssertionRejected."""
        if not self._secret:
            raise AssertionRejected("no gateway secret configured")
        parts = assertion.split(":")
        if len(parts) != 5 or parts[0] != VERSION:
            raise AssertionRejected("malformed assertion")
        _, tenant, rid, at, mac = parts
        signed = assertion[: -len(mac) - 1]
        if not hmac.compare_digest(mac.encode(), _mac(self._secret, f"{signed}:{method}").encode()):
            raise AssertionRejected("bad signature")
        if not (TENANT.fullmatch(tenant) and _REQUEST_ID.fullmatch(rid) and at.isdigit()):
            raise AssertionRejected("malformed assertion")
        if not hmac.compare_digest(rid.encode(), request_id.encode()):
            raise AssertionRejected("request id differs from X-Request-Id")
        now = int(self._clock() * 1000)
        if abs(now - int(at)) > self._max_age_ms:
            raise AssertionRejected("assertion expired")
        self._remember(rid, now)
        return tenant

    def _remember(self, request_id: str, now_ms: int) -> None:
        if request_id in self._seen:
            raise AssertionRejected("assertion replayed")
        self._seen[request_id] = now_ms
        # Forget ids whose assertions have expired: they are refused by their time already.
        horizon = now_ms - 2 * self._max_age_ms
        while self._seen and (len(self._seen) > _MAX_REMEMBERED
                              or next(iter(self._seen.values())) < horizon):
            self._seen.popitem(last=False)
