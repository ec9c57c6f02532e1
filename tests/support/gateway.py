"""Talking to a service the way the gateway does: a fresh signed tenant assertion per request."""

from __future__ import annotations

import uuid
from collections.abc import Generator

import httpx

from duetime.tenant_assertion import ASSERTION_HEADER, REQUEST_ID_HEADER, TenantAssertions


def new_request_id() -> str:
    return uuid.uuid4().hex


def assertion_headers(assertions: TenantAssertions, tenant: str, method: str = "GET",
                      at_ms: int | None = None) -> dict[str, str]:
    """The two headers the gateway adds to one request for `tenant` (a new request id each call)."""
    request_id = new_request_id()
    return {ASSERTION_HEADER: assertions.sign(tenant, request_id, method, at_ms),
            REQUEST_ID_HEADER: request_id}


class AsTenant(httpx.Auth):
    """httpx auth that signs every request for `tenant`, as nginx does for a valid API key."""

    def __init__(self, assertions: TenantAssertions, tenant: str) -> None:
        self.assertions, self.tenant = assertions, tenant

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(assertion_headers(self.assertions, self.tenant, request.method))
        yield request
