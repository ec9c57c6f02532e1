"""The public API as one OpenAPI 3.1 document: both services' routes, as the gateway serves them.

Generated from the apps themselves (`python -m schemas.export` writes schemas/openapi.json), so
it cannot drift from the routes: tests/unit/test_openapi_document.py fails when the committed
file is stale, and checks it against ../shared/API.md's list of endpoints. The search service
serves the file at GET /openapi.json, with Swagger UI at /docs (search_service/api_docs.py).
"""

from __future__ import annotations

from typing import Any, cast

from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.tenant_assertion import TenantAssertions

INFO = {
    "title": "duetime API",
    "version": "1",
    "summary": "Schedule webhooks and Kafka messages: once, after a delay, every N seconds, on cron.",
    "description": (
        "Every request goes through the gateway with an API key, as `Authorization: Bearer <key>` "
        "or `X-API-Key: <key>`; the key decides the tenant, and a tenant sees only its own jobs. "
        "Writes (POST, PUT, PATCH, DELETE) are accepted once Kafka holds them (202) and applied "
        "by the writer moments later; reads show what the writer stored. Every error is RFC 9457 "
        "`application/problem+json`."),
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API key (`make key TENANT=…`)."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
               "description": "The same API key, in a header of its own."},
}


def _apps() -> dict[str, Any]:
    # Imported here: the services import schemas, never the other way round at run time.
    from job_service.api import build_app as job_app
    from job_service.apply import PostgresJobStore
    from job_service.signing_secrets import SigningSecretRoutes
    from job_service.sources import SourceRoutes
    from search_service.api import build_app as search_app
    from search_service.output import OutputRoutes
    from search_service.signing_secrets import SigningSecretList
    from search_service.sources import SourceReads

    ids, signer, unused = JobIds("x" * 16), TenantAssertions("x" * 32), cast(Any, None)
    # Built as the services' main() builds them (job_service/service.py, search_service/service.py).
    write = job_app(Lifecycle("job_service"), unused, unused, unused, ids, signer,
                    store=PostgresJobStore(unused))
    write.include_router(SigningSecretRoutes(unused, 5).router())
    write.include_router(SourceRoutes(unused).router())
    read = search_app(Lifecycle("search_service"), unused, {}, ids, signer)
    read.include_router(SigningSecretList(unused).router())
    read.include_router(OutputRoutes(unused, {}, unused, 90).router())
    read.include_router(SourceReads(unused).router())
    return {"write": write, "read": read}


def merged() -> dict[str, Any]:
    """One document for both services; a path+method or a schema name defined differently by
    the two is an error, not a silent overwrite."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    version = "3.1.0"
    for side, app in _apps().items():
        document = app.openapi()
        version = document["openapi"]
        for path, item in document.get("paths", {}).items():
            merged_item = paths.setdefault(path, {})
            for method, operation in item.items():
                if method in merged_item:
                    raise ValueError(f"{method.upper()} {path} is defined by both services")
                merged_item[method] = {**operation, "tags": [side]}
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            if name in schemas and schemas[name] != schema:
                raise ValueError(f"schema {name} differs between the services")
            schemas[name] = schema
    return {
        "openapi": version,
        "info": INFO,
        "servers": [{"url": "/", "description": "the gateway"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "tags": [{"name": "write", "description": "job service: commands, accepted with 202"},
                 {"name": "read", "description": "search service: what is stored"}],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(schemas.items())),
                       "securitySchemes": SECURITY_SCHEMES},
    }
