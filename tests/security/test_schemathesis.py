"""Schemathesis against the API's OpenAPI document, sent through the gateway (issue 7, "Systematic checks").

The document the gateway serves at /openapi.json (both services' routes, schemas/openapi.py)
drives generated requests, valid
(positive) and invalid (negative), at the gateway with a tenant's key. Every answer must be no 5xx,
a documented status code, the documented content type, and a body matching the documented schema;
an invalid request must be refused (4xx).

Bounded for `make test`: a fixed number of examples per operation and mode, derandomized (the same
requests every run), no example database. Only harmless jobs are created: every URL in a request
body is moved to a loopback port of the test range (18900-18999) where nothing listens, every
Kafka topic to one test topic, and whatever a request created is deleted right away.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

# A URL the executor may call: loopback, in the test-sink range, and not a sink any test runs.
NOWHERE = "127.0.0.1:18999"
TOPIC = "schemathesis.sink"
# Per operation and mode: about 80 s for both documents here. More finds more: the variable lets a
# longer run ask for it (400 ran clean in about 3 minutes when this was written).
EXAMPLES = int(os.environ.get("DUETIME_SCHEMATHESIS_EXAMPLES", "100"))
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# schemathesis' own list of statuses that reject a request.
REJECTIONS = [400, 401, 403, 404, 405, 406, 409, 415, 422, 428, 429, "5xx"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]
AnyCase = Case[Any]
# The collection a POST creates in, and where the created thing is deleted.
DELETE_AT = {"/jobs": "/jobs/{}", "/timers": "/jobs/{}", "/signing-secrets": "/signing-secrets/{}"}
SETTINGS = settings(deadline=None, derandomize=True, database=None, max_examples=EXAMPLES,
                    suppress_health_check=list(HealthCheck))


def harmless(value: Any) -> Any:
    """`value` with every http(s) URL pointed at NOWHERE and every Kafka topic at TOPIC."""
    if isinstance(value, dict):
        moved = {key: harmless(item) for key, item in value.items()}
        for key, item in value.items():
            if key == "url" and isinstance(item, str) and item.lower().startswith(("http:", "https:")):
                parts = urlsplit(item)
                moved[key] = urlunsplit(("http", NOWHERE, parts.path, parts.query, ""))
            elif key == "topic" and isinstance(item, str):
                moved[key] = TOPIC
        return moved
    if isinstance(value, list):
        return [harmless(item) for item in value]
    return value


class Undo:
    """Deletes at once whatever a generated request created, so nothing fires and no tenant
    limit (jobs, signing secrets) fills up."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def created(self, case: AnyCase, status: int, body: Any) -> None:
        where = DELETE_AT.get(case.path)
        if case.method.upper() != "POST" or where is None or not 200 <= status < 300:
            return
        ident = body.get("job_id") or body.get("id") if isinstance(body, dict) else None
        if isinstance(ident, str):
            self.client.delete(where.format(ident)).raise_for_status()


@pytest.fixture(scope="module")
def undo(env: dict[str, str]) -> Iterator[Undo]:
    with httpx.Client(base_url=env["DUETIME_URL"], timeout=30,
                      headers={"Authorization": f"Bearer {env['DUETIME_API_KEY']}"}) as client:
        yield Undo(client)


def _document(url: str, key: str) -> dict[str, Any]:
    response = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def _schema(document: dict[str, Any], env: dict[str, str]) -> BaseSchema:
    config = schemathesis.Config.from_dict({
        "base-url": env["DUETIME_URL"],
        "headers": {"Authorization": f"Bearer {env['DUETIME_API_KEY']}"},
        "request-timeout": 30,
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True},
        # A fuzzed body past the gateway's 256 KiB limit is refused with 413, a request line past
        # 8 KiB with 414: rejections too.
        "checks": {"negative_data_rejection": {"expected-statuses": [*REJECTIONS, 413, 414]}},
    })
    return schemathesis.openapi.from_dict(document, config=config)


@pytest.fixture(scope="module")
def api_schema(env: dict[str, str]) -> BaseSchema:
    # One document for both services: GETs reach the search service, the rest the job service.
    return _schema(_document(f"{env['DUETIME_URL']}/openapi.json", env["DUETIME_API_KEY"]), env)


def _call(case: AnyCase, undo: Undo) -> None:
    case.body = harmless(case.body)
    response = case.call()
    try:
        body = response.json()
    except ValueError:
        body = None
    undo.created(case, response.status_code, body)
    case.validate_response(response, checks=CHECKS)


def _fuzz(schema: BaseSchema, undo: Undo) -> list[str]:
    """Every operation in both modes; what failed, one entry per operation and mode.

    (Driven by hand rather than by schemathesis' pytest plugin, whose fixture loader does not
    run under this pytest.)"""
    failures = []
    for loaded in schema.get_all_operations():
        if not isinstance(loaded, Ok):
            failures.append(f"an operation of the document is invalid: {loaded.err()}")
            continue
        operation = loaded.ok()
        for mode in MODES:

            @SETTINGS
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: AnyCase) -> None:
                _call(case, undo)

            try:
                run()
            except Unsatisfiable:
                pass  # no invalid request exists for what this operation documents
            except (Exception, FailureGroup) as exc:  # FailureGroup is a BaseExceptionGroup
                failures.append(f"{operation.label} ({mode.value}): {_shortened(str(exc))}")
    return failures


def _shortened(text: str, limit: int = 3000) -> str:
    # A fuzzed body can be hundreds of KiB; the reproducing curl line stays readable without it.
    return text if len(text) <= limit else f"{text[:limit]} … ({len(text) - limit} more characters)"


def test_write_api(api_schema: BaseSchema, undo: Undo) -> None:
    failures = _fuzz(api_schema.include(tag="write"), undo)
    assert not failures, "\n\n".join(failures)


def test_read_api(api_schema: BaseSchema, undo: Undo) -> None:
    failures = _fuzz(api_schema.include(tag="read"), undo)
    assert not failures, "\n\n".join(failures)
