"""The read API's bound on one query (issue 7 hole 6; docs/quotas.md, ADR 0020).

Every connection of the search service runs under Postgres' `statement_timeout`: a query that
would read too much (a `q` with no trigram over a million jobs, a wide stats window) is stopped
by Postgres and answered 422 — narrowing the filter helps, repeating it does not, so it is not a
503 a client would retry. Only the slow query is stopped: the tenant's other requests and other
tenants' queries never waited behind it.
"""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from duetime.problems import problem

log = logging.getLogger(__name__)
DEFAULT_STATEMENT_TIMEOUT_MS = 2000
HINT = ("narrow the filter: a longer q (three letters or digits in a row use the search index), "
        "a state, label, name or time range")


def install(app: FastAPI, timeout_ms: int) -> None:
    async def too_expensive(request: Request, exc: Exception) -> JSONResponse:
        log.warning("read query stopped by statement_timeout",
                    extra={"path": request.url.path, "timeout_ms": timeout_ms})
        return problem(422, "Query too expensive",
                       f"the query ran longer than the read API allows ({timeout_ms} ms) and "
                       f"was stopped; {HINT}",
                       [{"field": "query", "message": f"too expensive; {HINT}"}])
    app.add_exception_handler(asyncpg.QueryCanceledError, too_expensive)
