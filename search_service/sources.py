"""GET /sources and GET /sources/{path}: a tenant's stored scripts read back
(duetime.objects.sources; written by the job service's PUT)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from duetime.objects import ObjectNotFound, ObjectStore
from duetime.objects.sources import prefix_of, source_key
from duetime.problem_docs import problem_responses
from duetime.problems import ProblemError, tenant_of
from schemas.api import OBJECT_PATH_PATTERN

STORE_DOWN = "the object store is not answering; retry later"
_PATH = re.compile(OBJECT_PATH_PATTERN)


class SourceReads:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def listing(self, request: Request,
                      prefix: Annotated[str | None, Query(max_length=800)] = None,
                      ) -> dict[str, object]:
        """Every source of the tenant (at most 1000), in path order; `prefix` narrows them."""
        tenant = tenant_of(request)
        if prefix is not None and prefix != "" and not _prefix_ok(prefix):
            raise ProblemError(422, "Invalid request", "not a source path prefix",
                               [{"field": "prefix", "message": "segments of "
                                 "[A-Za-z0-9_][A-Za-z0-9_.=-]* joined by '/'"}])
        root = prefix_of(tenant)
        try:
            found = await self.store.list(root + (prefix or ""))
        except OSError as exc:
            raise ProblemError(503, "Service unavailable", STORE_DOWN,
                               headers={"Retry-After": "2"}) from exc
        return {"items": [{"path": o.key[len(root):], "size": o.size} for o in found]}

    async def read(self, request: Request,
                   path: Annotated[str, Path(max_length=800)]) -> Response:
        key = source_key(tenant_of(request), path)
        try:
            size = (await self.store.head(key)).size
        except ObjectNotFound:
            raise ProblemError(404, "Not found", f"no source {path}") from None
        except OSError as exc:
            raise ProblemError(503, "Service unavailable", STORE_DOWN,
                               headers={"Retry-After": "2"}) from exc
        return StreamingResponse(self.store.get(key), media_type="application/octet-stream",
                                 headers={"Content-Length": str(size),
                                          "Cache-Control": "private, no-store",
                                          "X-Content-Type-Options": "nosniff"})

    def router(self) -> APIRouter:
        r = APIRouter(tags=["sources"])
        r.add_api_route("/sources", self.listing, methods=["GET"],
                        responses=problem_responses(422, 503),
                        summary="The tenant's stored sources (path and size)")
        r.add_api_route("/sources/{path:path}", self.read, methods=["GET"],
                        response_class=Response, responses={
                            200: {"content": {"application/octet-stream": {}},
                                  "description": "the stored source"},
                            **problem_responses(404, 422, 503)},
                        summary="A stored source, as it was uploaded")
        return r


def _prefix_ok(prefix: str) -> bool:
    """A path's first segments, with or without a trailing '/', or a segment's start."""
    return bool(_PATH.fullmatch(prefix[:-1] if prefix.endswith("/") else prefix))
