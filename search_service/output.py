"""Stored command output, read back (GET /runs/{run_id}/output, GET /jobs/{id}/logs; ADR 0031).

The output of each attempt is an object `tenant/job/run/attempt/output` (duetime.objects);
the run's row says which tenant and job it belongs to, so another tenant's run is a 404 like
any unknown one. One byte range (`Range: bytes=…`) is served as 206, as a file server would.
Output the run's row says was stored but the store no longer has was removed by the retention
sweep (duetime.objects.retention): 410 Gone, not 404.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from duetime.objects import ObjectNotFound, ObjectStore, output_key
from duetime.objects.keys import InvalidKey
from duetime.problems import ProblemError, tenant_of
from schemas.api import STEP_NAME_PATTERN
from schemas.events import INT32_MAX

TEXT = "text/plain; charset=utf-8"
_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")


class Unsatisfiable(ValueError):
    """A range that starts past the end of the output (416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """[start, end) of a single `bytes=` range; None for the whole output (no header, or one
    this server ignores: several ranges, other units, bad syntax — RFC 9110 lets it)."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match[1] == match[2] == "":
        return None
    first, last = match[1], match[2]
    if first == "":  # the last N bytes
        length = int(last)
        if length == 0:
            raise Unsatisfiable("a suffix range of 0 bytes")
        return max(0, size - length), size
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if last != "" and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise Unsatisfiable(f"the output is {size} bytes")
    return start, end


def was_stored(row: asyncpg.Record, attempt: int, step: str | None) -> bool:
    """Whether the run's row says this output was written: the latest attempt ended with an
    output size, and a step, if asked for, ran (earlier attempts are not recorded)."""
    if row["output_bytes"] is None or attempt != row["attempt"]:
        return False
    return step is None or any(s.get("name") == step and s.get("status") != "skipped"
                               for s in row["steps"] or [])


class OutputRoutes:
    def __init__(self, pool: asyncpg.Pool[Any], queries: dict[str, str],
                 store: ObjectStore, retention_days: int) -> None:
        self.pool, self.q, self.store = pool, queries, store
        self.retention_days = retention_days

    async def run_output(self, request: Request, run_id: Annotated[str, Path(max_length=64)],
                         attempt: Annotated[int | None, Query(ge=1, le=INT32_MAX)] = None,
                         step: Annotated[str | None, Query(pattern=STEP_NAME_PATTERN)] = None,
                         ) -> Response:
        tenant = tenant_of(request)
        row = await self.pool.fetchrow(self.q["run_output"], run_id, tenant)
        if row is None:
            raise ProblemError(404, "Not found", f"no run {run_id}")
        if attempt is not None and attempt > row["attempt"]:
            raise ProblemError(404, "Not found", f"run {run_id} has no attempt {attempt}")
        return await self.serve(request, row, attempt or row["attempt"], step)

    async def job_logs(self, request: Request, job_id: str,
                       step: Annotated[str | None, Query(pattern=STEP_NAME_PATTERN)] = None,
                       ) -> Response:
        job = await self.pool.fetchrow(self.q["get_job"], job_id, tenant_of(request))
        if job is None:
            raise ProblemError(404, "Not found", f"no job {job_id}")
        if job["last_run_id"] is None:
            raise ProblemError(404, "Not found", f"job {job_id} has no finished run yet")
        return await self.run_output(request, job["last_run_id"], step=step)

    async def serve(self, request: Request, row: asyncpg.Record, attempt: int,
                    step: str | None) -> Response:
        run_id = row["run_id"]
        try:
            key = output_key(row["tenant"], row["job_id"], run_id, attempt, step)
            size = (await self.store.head(key)).size
        except (ObjectNotFound, InvalidKey):
            what = f"run {run_id} attempt {attempt}" + (f" step {step}" if step else "")
            if was_stored(row, attempt, step):
                raise ProblemError(410, "Gone", f"the output of {what} is no longer kept: "
                                   f"output is removed {self.retention_days} days after it "
                                   "was written") from None
            raise ProblemError(404, "Not found", f"{what} has no stored output (only command "
                               "and steps runs keep output, once the attempt or step ended; "
                               "a step never reached has none)") from None
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, no-store",
                   "X-Content-Type-Options": "nosniff"}
        try:
            wanted = byte_range(request.headers.get("range"), size)
        except Unsatisfiable as exc:
            raise ProblemError(416, "Range not satisfiable", str(exc),
                               headers={**headers, "Content-Range": f"bytes */{size}"}) from None
        if wanted is None:
            return StreamingResponse(self.store.get(key), media_type=TEXT,
                                     headers={**headers, "Content-Length": str(size)})
        start, end = wanted
        return StreamingResponse(
            self.store.get(key, start, end), status_code=206, media_type=TEXT,
            headers={**headers, "Content-Length": str(end - start),
                     "Content-Range": f"bytes {start}-{end - 1}/{size}"})

    def router(self) -> APIRouter:
        r = APIRouter()
        text = {"content": {TEXT: {}}, "description": "the stored output"}
        gone = {"description": "the output was stored, and removed past its retention"}
        r.add_api_route("/runs/{run_id}/output", self.run_output, methods=["GET"],
                        response_class=Response, responses={200: text, 206: text, 410: gone})
        r.add_api_route("/jobs/{job_id}/logs", self.job_logs, methods=["GET"],
                        response_class=Response, responses={200: text, 206: text, 410: gone})
        # The dashboard's link to a run's output: the same read, through the session cookie
        # the gateway turns into the tenant (ADR 0029).
        r.add_api_route("/ui/runs/{run_id}/output", self.run_output, methods=["GET"],
                        response_class=Response, include_in_schema=False)
        return r
