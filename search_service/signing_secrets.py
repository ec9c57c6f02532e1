"""GET /signing-secrets: a tenant's signing secrets, ids and dates only (API.md, ADR 0019)."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Request

from duetime.problems import tenant_of
from duetime.sql import load_queries
from duetime.timeutil import iso
from schemas.signing_secrets import SigningSecretPage, SigningSecretSummary
from search_service import cursors
from search_service.filters import ListQuery, parse_query

QUERIES = load_queries("search_service", "signing_secrets.sql")
LISTING = "signing_secrets"


class SigningSecretList:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self.pool = pool

    async def list(self, request: Request) -> SigningSecretPage:
        params = parse_query(ListQuery, request.query_params.multi_items())
        after = cursors.decode(params.cursor, LISTING, "time")
        at, ident = after if after is not None else (None, None)
        rows = await self.pool.fetch(QUERIES["signing_secrets_page"], tenant_of(request), at,
                                     ident, params.limit + 1)
        # Never the secret: the query does not even select it.
        items = [SigningSecretSummary(id=r["id"], created_at=iso(r["created_at"]) or "")
                 for r in rows[:params.limit]]
        nxt = None
        if len(rows) > params.limit:
            last = rows[params.limit - 1]
            nxt = cursors.encode(LISTING, last["created_at"], last["id"])
        return SigningSecretPage(items=items, next_cursor=nxt)

    def router(self) -> APIRouter:
        r = APIRouter()
        r.add_api_route("/signing-secrets", self.list, methods=["GET"])
        return r
