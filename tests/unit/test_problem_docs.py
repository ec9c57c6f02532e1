"""Every error a service or the gateway answers is documented as problem+json in its OpenAPI document."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from duetime.problem_docs import PROBLEM_JSON, PROBLEM_REF, problem_responses
from duetime.problems import install


class Thing(BaseModel):
    name: str


def _document() -> dict[str, Any]:
    app = FastAPI()
    install(app)

    @app.post("/things", status_code=201, responses=problem_responses(409))
    async def create(thing: Thing) -> Thing:
        return thing

    @app.get("/things/{thing_id}")
    async def read(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    @app.get("/things")
    async def listing() -> list[str]:
        return []

    return app.openapi()


def _errors(operation: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(code): answer for code, answer in operation["responses"].items() if int(code) >= 400}


def test_each_operation_documents_the_problems_it_can_answer() -> None:
    paths = _document()["paths"]
    assert set(_errors(paths["/things"]["post"])) == {400, 401, 409, 413, 414, 422, 429, 503}
    assert set(_errors(paths["/things/{thing_id}"]["get"])) == {401, 404, 414, 422, 429, 503}
    assert set(_errors(paths["/things"]["get"])) == {401, 414, 429, 503}


def test_problems_are_problem_json_with_the_problem_schema() -> None:
    document = _document()
    for item in document["paths"].values():
        for operation in item.values():
            for status, answer in _errors(operation).items():
                assert answer["content"] == {PROBLEM_JSON: {"schema": PROBLEM_REF}}, status
                assert answer["description"], status
    schemas = document["components"]["schemas"]
    assert set(schemas["Problem"]["required"]) == {"title", "status"}
    assert "ProblemField" in schemas
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 shape, answered by nobody


def test_the_document_is_documented_again_when_routes_are_added() -> None:
    app = FastAPI()
    install(app)
    assert app.openapi()["paths"] == {}

    @app.delete("/things/{thing_id}", status_code=204)
    async def delete(thing_id: str) -> None:
        return None

    deleted = app.openapi()["paths"]["/things/{thing_id}"]["delete"]
    assert set(_errors(deleted)) == {401, 404, 414, 422, 429, 503}
