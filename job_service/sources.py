"""PUT and DELETE /sources/{path}: a tenant's scripts for command jobs (duetime.objects.sources).

Written to the object store directly, not through the command log: the object store is where
they are kept, and a job that names one reads it from there when it runs. Reads are the search
service's (GET /sources, GET /sources/{path}).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from duetime.objects import ObjectNotFound, ObjectStore
from duetime.objects.sources import (
    MAX_SOURCE_BYTES,
    MAX_SOURCE_BYTES_PER_TENANT,
    MAX_SOURCES_PER_TENANT,
    prefix_of,
    source_key,
)
from duetime.problem_docs import problem_responses
from duetime.problems import ProblemError, tenant_of

STORE_DOWN = "the object store is not answering; nothing was changed; retry later"


class SourceRoutes:
    def __init__(self, store: ObjectStore, max_sources: int = MAX_SOURCES_PER_TENANT,
                 max_bytes: int = MAX_SOURCE_BYTES_PER_TENANT) -> None:
        self.store, self.max_sources, self.max_bytes = store, max_sources, max_bytes

    async def put(self, request: Request, response: Response,
                  path: Annotated[str, Path(max_length=800)]) -> dict[str, object]:
        tenant = tenant_of(request)
        key = source_key(tenant, path)
        try:
            stored = {o.key: o.size for o in await self.store.list(prefix_of(tenant))}
        except OSError as exc:
            raise ProblemError(503, "Service unavailable", STORE_DOWN,
                               headers={"Retry-After": "2"}) from exc
        replaced = key in stored
        others = {k: v for k, v in stored.items() if k != key}
        if len(others) >= self.max_sources:
            raise ProblemError(409, "Conflict", f"a tenant has at most {self.max_sources} "
                               "sources: delete one before adding another")
        room = self.max_bytes - sum(others.values())
        try:
            size = await self.store.put(key, _bounded(request, min(MAX_SOURCE_BYTES, room),
                                                      self.max_bytes))
        except _TooLarge as exc:
            raise ProblemError(413, "Payload Too Large", str(exc)) from None
        except OSError as exc:
            raise ProblemError(503, "Service unavailable", STORE_DOWN,
                               headers={"Retry-After": "2"}) from exc
        response.status_code = 200 if replaced else 201
        return {"path": path, "size": size}

    async def delete(self, request: Request,
                     path: Annotated[str, Path(max_length=800)]) -> Response:
        key = source_key(tenant_of(request), path)
        try:
            await self.store.head(key)
            await self.store.delete(key)
        except ObjectNotFound:
            raise ProblemError(404, "Not found", f"no source {path}") from None
        except OSError as exc:
            raise ProblemError(503, "Service unavailable", STORE_DOWN,
                               headers={"Retry-After": "2"}) from exc
        return Response(status_code=204)

    def router(self) -> APIRouter:
        r = APIRouter(tags=["sources"])
        r.add_api_route("/sources/{path:path}", self.put, methods=["PUT"], status_code=201,
                        responses={200: {"description": "an existing source was replaced"},
                                   **problem_responses(409, 413, 422, 503)},
                        summary="Store a script or archive a command job can name in "
                                "source.object (the body, at most 256 KiB)")
        r.add_api_route("/sources/{path:path}", self.delete, methods=["DELETE"],
                        status_code=204, response_class=Response,
                        responses=problem_responses(404, 422, 503),
                        summary="Delete a stored source")
        return r


class _TooLarge(ValueError):
    pass


async def _bounded(request: Request, limit: int, total: int) -> AsyncIterator[bytes]:
    """The body as it arrives; past `limit` the upload fails, and the store keeps nothing."""
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise _TooLarge(f"a source is at most {MAX_SOURCE_BYTES} bytes, and a tenant's "
                            f"sources at most {total} in all")
        yield chunk
