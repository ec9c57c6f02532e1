"""The public API's OpenAPI document and Swagger UI, served without a CDN (ADR 0028).

The document is schemas/openapi.json, generated from both services' routes (schemas/openapi.py).
It describes the API, not any tenant's data, so the gateway serves it without a key; Swagger
UI's "Authorize" takes a key for "Try it out". The UI's files come from the fastapi-swagger
package; only the two it needs are served, by name.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, Response

_UI = resources.files("fastapi_swagger").joinpath("resources")
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
          "favicon-32x32.png": "image/png"}
# The page loads only what we serve: no inline script, no other origin.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>duetime API</title>
  <link rel="icon" href="/docs/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""
INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  persistAuthorization: false,
  tryItOutEnabled: false,
});
"""


def docs_router() -> APIRouter:
    document = resources.files("schemas").joinpath("openapi.json").read_bytes()
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
               "Cache-Control": "no-cache"}
    router = APIRouter(include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi() -> Response:
        return Response(document, media_type="application/json", headers=headers)

    @router.get("/docs")
    async def page() -> Response:
        return Response(PAGE, media_type="text/html; charset=utf-8", headers=headers)

    @router.get("/docs/init.js")
    async def init() -> Response:
        return Response(INIT, media_type="text/javascript", headers=headers)

    @router.get("/docs/{asset}")
    async def asset(asset: str) -> Response:
        if asset not in ASSETS:
            raise HTTPException(404)
        return Response(_UI.joinpath(asset).read_bytes(), media_type=ASSETS[asset],
                        headers={**headers, "Cache-Control": "max-age=86400"})

    return router
