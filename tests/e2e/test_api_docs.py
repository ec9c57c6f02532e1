"""The API's description through the gateway: one OpenAPI 3.1 document and Swagger UI at /docs,
without a key and without loading anything from another origin (ADR 0028)."""

from __future__ import annotations

import re

import httpx

from schemas.export import OPENAPI


async def test_the_merged_document_is_served_without_a_key(anonymous: httpx.AsyncClient) -> None:
    resp = await anonymous.get("/openapi.json")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    document = resp.json()
    assert document["openapi"].startswith("3.1")
    assert {"post", "get"} <= set(document["paths"]["/jobs"])  # both services' operations
    assert resp.content == OPENAPI.read_bytes()


async def test_swagger_ui_loads_only_same_origin_assets(anonymous: httpx.AsyncClient) -> None:
    page = await anonymous.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and all(ref.startswith("/docs/") for ref in refs), refs
    for ref in refs:
        asset = await anonymous.get(ref)
        assert asset.status_code == 200, ref
        assert len(asset.content) > 0
    bundle = await anonymous.get("/docs/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text
    init = await anonymous.get("/docs/init.js")
    assert '"/openapi.json"' in init.text


async def test_nothing_else_is_served_under_docs(anonymous: httpx.AsyncClient) -> None:
    for path in ("/docs/index.html", "/docs/__init__.py", "/docs/..%2F..%2Fapi_keys",
                 "/docs/resources/swagger-ui.css"):
        resp = await anonymous.get(path)
        assert resp.status_code in (400, 401, 404), (path, resp.status_code)
        assert "swagger" not in resp.text.lower()
    # The API itself still wants a key.
    assert (await anonymous.get("/jobs")).status_code == 401
