"""POST and DELETE /signing-secrets: a tenant's webhook signing secrets (API.md, ADR 0019).

Unlike jobs these are written to Postgres directly, not through the command log: the secret is
shown once, in the `201`, so it must be stored before the answer — and key material has no
business in a Kafka topic that others read and replay.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

import asyncpg
import orjson
from fastapi import APIRouter, Request, Response

from duetime.problem_docs import problem_responses
from duetime.problems import ProblemError, tenant_of
from duetime.sql import load_queries
from duetime.timeutil import iso
from duetime.webhook_signing import new_secret
from schemas.signing_secrets import SigningSecretCreated

QUERIES = load_queries("job_service", "signing_secrets.sql")
STORE_DOWN = "the secret store is not answering; nothing was changed; retry later"
# The secret is in this answer and nowhere else the client can ever read it again.
NO_STORE = {"Cache-Control": "no-store"}


_ID = re.compile(r"ss_[0-9a-f]{24}")


def new_secret_id() -> str:
    return "ss_" + secrets.token_hex(12)


async def _no_body(request: Request) -> None:
    """The create takes no fields: an empty body or `{}`; anything else is refused, as unknown
    fields are everywhere in the API."""
    raw = await request.body()
    if not raw.strip():
        return
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(400, "Malformed JSON", "the request body is not valid JSON") from exc
    if body != {}:
        fields = sorted(body) if isinstance(body, dict) else ["body"]
        raise ProblemError(422, "Invalid request", "a signing secret takes no fields",
                           [{"field": f[:64], "message": "unknown field"} for f in fields])


class SigningSecretRoutes:
    def __init__(self, pool: asyncpg.Pool[Any], per_tenant: int) -> None:
        self.pool, self.per_tenant = pool, per_tenant

    async def create(self, request: Request, response: Response) -> SigningSecretCreated:
        await _no_body(request)
        tenant, secret_id, secret = tenant_of(request), new_secret_id(), new_secret()
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(QUERIES["lock_tenant_signing_secrets"], tenant)
                row = await conn.fetchrow(QUERIES["insert_signing_secret"], secret_id, tenant,
                                          secret, self.per_tenant)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise ProblemError(503, "Service unavailable", STORE_DOWN,
                               headers={"Retry-After": "2"}) from exc
        if row is None:
            raise ProblemError(409, "Conflict",
                               f"a tenant has at most {self.per_tenant} signing secrets: "
                               "delete one before creating another")
        response.headers["Location"] = f"/signing-secrets/{secret_id}"
        response.headers.update(NO_STORE)
        return SigningSecretCreated(id=row["id"], secret=secret,
                                    created_at=iso(row["created_at"]) or "")

    async def delete(self, request: Request, secret_id: str) -> Response:
        tenant = tenant_of(request)
        try:
            # Not an id we issue (a NUL, say): nothing to ask Postgres.
            gone = None if not _ID.fullmatch(secret_id) else await self.pool.fetchval(
                QUERIES["delete_signing_secret"], secret_id, tenant)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise ProblemError(503, "Service unavailable", STORE_DOWN,
                               headers={"Retry-After": "2"}) from exc
        if gone is None:  # unknown, or another tenant's: the same answer for both
            raise ProblemError(404, "Not found", f"no signing secret {secret_id[:64]}")
        return Response(status_code=204)

    def router(self) -> APIRouter:
        r = APIRouter()
        # A tenant at its limit of secrets (the rest: duetime.problem_docs).
        r.add_api_route("/signing-secrets", self.create, methods=["POST"], status_code=201,
                        responses=problem_responses(409))
        r.add_api_route("/signing-secrets/{secret_id}", self.delete, methods=["DELETE"],
                        status_code=204, response_model=None)
        return r
