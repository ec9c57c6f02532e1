"""ASGI middleware: no request reaches a route of the APIs without the gateway's valid assertion.

It runs before routing and body parsing, so a caller without a valid assertion learns nothing —
not whether a path exists, nor whether a body would validate — and always gets the same 401.
The verified tenant is left in the request state, where `duetime.problems.tenant_of` reads it.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from duetime.problems import UNAUTHORIZED, problem
from duetime.tenant_assertion import (
    ASSERTION_HEADER,
    REQUEST_ID_HEADER,
    AssertionRejected,
    TenantAssertions,
)

log = logging.getLogger(__name__)
# The ops endpoints (duetime.ops) answer without a tenant: probes and scrapers have none; so does
# the API's description (search_service/api_docs.py), which holds no tenant's data; and the
# dashboard's login form and static files (search_service/ui, ADR 0029), which hold none either.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/ui/login"})
OPEN_PREFIXES = ("/docs/", "/ui/static/")
_ASSERTION = ASSERTION_HEADER.lower().encode()
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()


def _header(scope: Scope, name: bytes) -> str:
    values = [v for k, v in scope["headers"] if k == name]
    # Two copies of a header are not something the gateway sends: treat as missing.
    return values[0].decode("latin-1") if len(values) == 1 else ""


class GatewayAuthentication:
    def __init__(self, app: ASGIApp, assertions: TenantAssertions) -> None:
        self.app, self.assertions = app, assertions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS \
                or scope["path"].startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        try:
            tenant = self.assertions.verify(_header(scope, _ASSERTION), _header(scope, _REQUEST_ID),
                                            scope["method"])
        except AssertionRejected as exc:
            log.warning("tenant assertion rejected", extra={"reason": str(exc),
                                                            "path": scope["path"]})
            response = problem(401, "Unauthorized", UNAUTHORIZED,
                               headers={"WWW-Authenticate": 'Bearer realm="duetime"'})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["tenant"] = tenant
        await self.app(scope, receive, send)
