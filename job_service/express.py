"""The express lane for the two hot creates, `POST /jobs` and `POST /timers` (ADR 0054).

FastAPI's dependency and response machinery cost the job service ~0.25 ms of CPU per create,
40 % of its share (measured on the stack, ADR 0054). This ASGI middleware answers the common case itself — one
`application/json` body that parses and validates — with the same `JobRoutes` code the routes
call. Everything else (a body that does not parse or validate, another content type, a repeated
header) is replayed untouched to the FastAPI app, so every error answer is FastAPI's own by
construction; errors raised after the body was accepted go to the app's own exception handlers.
tests/unit/test_job_service_express.py holds the two lanes to the same answers.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas.api import JobSpec, TimerRequest

if TYPE_CHECKING:
    from job_service.api import JobRoutes

_CONTENT_TYPE = b"content-type"
_IDEMPOTENCY_KEY = b"idempotency-key"
Accept = Callable[[str, Any, "str | None"], Awaitable[tuple[str, BaseModel]]]


class _Lane:
    def __init__(self, model: type[BaseModel], accept: Accept, status: int,
                 route: APIRoute) -> None:
        self.model, self.accept, self.status, self.route = model, accept, status, route


def _idempotency_keys(scope: Scope) -> list[str] | None:
    """The Idempotency-Key (none or one) of a request the lane may answer; None for one it leaves
    to FastAPI (a content type other than one `application/json`, or a repeated key)."""
    types: list[bytes] = []
    keys: list[bytes] = []
    for name, value in scope["headers"]:
        if name == _CONTENT_TYPE:
            types.append(value)
        elif name == _IDEMPOTENCY_KEY:
            keys.append(value)
    if len(types) != 1 or len(keys) > 1 \
            or types[0].split(b";", 1)[0].strip().lower() != b"application/json":
        return None
    return [key.decode("latin-1") for key in keys]


async def _read(receive: Receive) -> bytes | None:
    """The whole body; None if the client went away first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then the client's own messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()
    return replayed


def _handler(app: FastAPI, exc: Exception) -> Callable[[Request, Exception], Any] | None:
    """The app's own handler of `exc` (as its ExceptionMiddleware would pick it); None for
    exceptions only the outermost 500 handler answers."""
    for kind in type(exc).__mro__:
        if kind is not Exception and kind in app.exception_handlers:
            handler: Callable[[Request, Exception], Any] = app.exception_handlers[kind]
            return handler
    return None


class ExpressCreates:
    """ASGI middleware inside the gateway check: it reads the tenant the check left in state."""

    def __init__(self, app: ASGIApp, routes: JobRoutes, router: APIRouter,
                 fastapi: FastAPI) -> None:
        """`router`: the one `routes` made, whose POST routes the lane stands in for."""
        self.app, self.fastapi = app, fastapi

        def post(path: str) -> APIRoute:
            return next(r for r in router.routes if isinstance(r, APIRoute)
                        and r.path == path and "POST" in (r.methods or ()))
        self.lanes = {"/jobs": _Lane(JobSpec, routes.accept_job, 202, post("/jobs")),
                      "/timers": _Lane(TimerRequest, routes.accept_timer, 201, post("/timers"))}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.lanes.get(scope["path"]) if scope["type"] == "http" \
            and scope["method"] == "POST" else None
        keys = _idempotency_keys(scope) if lane is not None else None
        tenant = scope.get("state", {}).get("tenant")
        if lane is None or keys is None or not tenant:
            await self.app(scope, receive, send)
            return
        body = await _read(receive)
        if body is None:
            return
        try:
            # The standard library's parser, as FastAPI's: orjson would read 2**64 as a float,
            # which the 64-bit check of a payload then never sees. Validated in Python mode, as
            # FastAPI validates.
            value = lane.model.model_validate(json.loads(body))
        except (ValueError, RecursionError, ValidationError):
            # FastAPI parses again and answers the 400 or 422 it always has.
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = lane.route  # the metrics' route label (duetime.http_metrics)
        try:
            location, answer = await lane.accept(tenant, value, keys[0] if keys else None)
        except Exception as exc:
            handler = _handler(self.fastapi, exc)
            if handler is None:
                raise  # the app's 500 (ServerErrorMiddleware), as from the route
            response = handler(Request(scope, receive), exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)
            return
        content = answer.model_dump_json(by_alias=True).encode()
        await send({"type": "http.response.start", "status": lane.status, "headers": [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
            (b"location", location.encode("latin-1"))]})
        await send({"type": "http.response.body", "body": content})
