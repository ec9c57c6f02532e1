"""RFC 9457 problem+json errors for every HTTP service."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from duetime import problem_docs

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
# Discriminator tags pydantic puts into error locations; users never wrote them.
_TAGS = {"once", "delay", "now", "interval", "cron", "http", "kafka", "command", "steps"}


class ProblemError(Exception):
    def __init__(self, status: int, title: str, detail: str | None = None,
                 errors: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.headers = errors, headers


def problem(status: int, title: str, detail: str | None = None,
            errors: list[dict[str, str]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if i == 0 and item in ("body", "query", "path", "header"):
            continue
        text = str(item)
        # The tag follows its union's field directly (target.command.command: the second is
        # the command target's own `command` field).
        if "[" in text or (text in _TAGS and i > 0 and loc[i - 1] in ("schedule", "target")):
            continue
        parts.append(text)
    return ".".join(parts) or "body"


def validation_errors(errors: Any) -> list[dict[str, str]]:
    return [{"field": field_path(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
            for e in errors]


def install(app: FastAPI) -> None:
    problem_docs.install(app)

    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem(400, "Malformed JSON", "the request body is not valid JSON")
        return problem(422, "Invalid request", "one or more fields are invalid",
                       validation_errors(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, (RecursionError, ValueError)):
            # FastAPI's answer to a body its JSON parser gave up on other than by a decode
            # error: nested past the recursion limit (or bytes it could not read as text).
            return problem(400, "Malformed JSON", "the request body is not valid JSON "
                           "(or is nested too deeply to read)")
        titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}
        return problem(exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail),
                       headers=dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
        return problem(500, "Internal error", "an unexpected error occurred")


UNAUTHORIZED = ("this request did not come through the gateway with a valid API key "
                "(missing, invalid or expired tenant assertion)")


def tenant_of(request: Request) -> str:
    """The tenant the gateway vouched for in its signed assertion (duetime.gateway_auth checked it
    before routing); 401 for anything else.

    Client-settable headers (`X-Duetime-Tenant` and the like) are never read: reaching a service
    port is not proof of anything (ADR 0017).
    """
    tenant: str | None = getattr(request.state, "tenant", None)
    if not tenant:
        raise ProblemError(401, "Unauthorized", UNAUTHORIZED)
    return tenant
