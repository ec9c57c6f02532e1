"""The public API's OpenAPI document: in step with the routes and with ../shared/API.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from schemas.export import OPENAPI, render_openapi

API_MD = Path(__file__).resolve().parents[3] / "shared" / "API.md"
METHODS = ("get", "put", "post", "delete", "patch")
# In API.md's contract but not built yet (none at the moment).
NOT_BUILT: set[tuple[str, str]] = set()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(OPENAPI.read_text())
    return loaded


def _shape(path: str) -> str:
    """A path with its parameters unnamed: API.md says {id} where the routes say {job_id}."""
    return re.sub(r"\{[^}]*\}", "{}", path.split("?")[0].split("[")[0])


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), _shape(path)) for path, item in document["paths"].items()
            for method in item if method in METHODS}


def test_the_committed_document_is_generated_from_the_routes() -> None:
    assert OPENAPI.read_text() == render_openapi(), "stale: run `make schemas` and commit"


def test_it_is_openapi_3_1_for_both_services(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    tags = {op["tags"][0] for item in document["paths"].values() for op in item.values()}
    assert tags == {"write", "read"}
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}


@pytest.mark.skipif(not API_MD.exists(), reason="../shared/API.md is not beside the project")
def test_every_endpoint_of_the_contract_is_documented(document: dict[str, Any]) -> None:
    contract = {(m, _shape(p)) for m, p in
                re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s]*)`", API_MD.read_text())}
    assert len(contract) >= 20
    missing = contract - operations(document) - NOT_BUILT
    assert not missing, f"in API.md but not in the API: {sorted(missing)}"
    built = NOT_BUILT & operations(document)
    assert not built, f"built now, take out of NOT_BUILT: {sorted(built)}"


def test_every_operation_documents_its_problems(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status in ("401", "429", "503"):
                content = operation["responses"][status]["content"]
                assert "application/problem+json" in content, (method, path, status)
