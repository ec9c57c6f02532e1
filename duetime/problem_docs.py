"""Documents every problem+json answer in a service's OpenAPI document (RFC 9457, problems.py).

FastAPI documents only the success and a 422 in its own `application/json` shape; the services
answer every error as `application/problem+json`, and the gateway in front of them adds its own.
So each operation documents, with the Problem schema: what its route declares
(`responses=problem_responses(...)`), what any request can get from the gateway (401, 414, 429, 503),
what a body can get (400 malformed JSON, 413 too large, 422 invalid), a 422 for bad parameters,
and a 404 for an id in the path that does not exist (or belongs to another tenant).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from schemas.api import Problem

PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
TITLES = {
    400: "Malformed JSON",
    401: "Unauthorized: missing or unknown API key",
    404: "Not found (or not this tenant's)",
    409: "Conflict",
    413: "Payload too large",
    414: "URI too long",
    422: "Invalid request",
    429: "Too many requests",
    503: "Service unavailable; retry after Retry-After",
}
FROM_THE_GATEWAY = (401, 414, 429, 503)
FOR_A_BODY = (400, 413, 422)
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route that answers these statuses besides the common ones."""
    return {status: {"description": TITLES.get(status, "Problem")} for status in statuses}


def _statuses(path: str, operation: dict[str, Any]) -> set[int]:
    statuses = set(FROM_THE_GATEWAY)
    statuses |= {int(code) for code in operation.get("responses", {}) if code.isdigit() and int(code) >= 400}
    if "requestBody" in operation:
        statuses |= set(FOR_A_BODY)
    if operation.get("parameters"):
        statuses.add(422)
    if "{" in path:
        statuses.add(404)
    return statuses


def document_problems(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (an OpenAPI dict) with every operation's problem answers; changed in place."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(schema.pop("$defs", {}))
    components["Problem"] = schema
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if (operation := item.get(method)) is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(_statuses(path, operation)):
                described = responses.get(str(status), {}).get("description")
                responses[str(status)] = {"description": described or TITLES.get(status, "Problem"),
                                          "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}
    # FastAPI's own 422 shape, now referenced by nothing: no service answers it.
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    return document


def install(app: FastAPI) -> None:
    """Serve `app`'s OpenAPI document with its problem answers documented."""
    generate = app.openapi  # cached by FastAPI, regenerated when routes are added
    documented: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        document = generate()
        if not documented or documented[0] is not document:
            documented[:] = [document_problems(document)]
        return document

    app.openapi = openapi  # type: ignore[method-assign]
