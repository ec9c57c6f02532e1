"""Postgres pool and migrations (numbered .sql files applied under an advisory lock)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from duetime.settings import PostgresSettings

log = logging.getLogger(__name__)
# A connection from a pool or a direct one; queries accept either.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
_MIGRATION_LOCK = 0x64756574  # "duet": every instance that migrates takes the same lock


async def _init(conn: asyncpg.Connection[Any]) -> None:
    await conn.set_type_codec("jsonb", encoder=lambda v: orjson.dumps(v).decode(),
                              decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """A pool release that only ends an open transaction (asyncpg does that before calling
    this): no reset query, for pools whose code never sets session state (ADR 0046)."""


@asynccontextmanager
async def pool(settings: PostgresSettings, *, read_only: bool = False,
               statement_timeout_ms: int | None = None,
               cache_statements: bool = False) -> AsyncIterator[asyncpg.Pool[Any]]:
    """`cache_statements`: for a service whose statements take no session state (no SET, LISTEN,
    advisory lock, cursor outside a transaction), keep each statement prepared on its connection
    and skip the reset query on release: two round trips fewer per query (ADR 0046). Plans stay
    custom, made with the bound values, which the catch-all listings need (ADR 0005)."""
    server_settings = {}
    if read_only:
        # A service that only reads says so: Postgres refuses its writes, whatever its role may do.
        server_settings["default_transaction_read_only"] = "on"
    if statement_timeout_ms is not None:
        # Postgres cancels any statement of this pool running longer (lock waits included).
        server_settings["statement_timeout"] = str(statement_timeout_ms)
    if cache_statements:
        server_settings["plan_cache_mode"] = "force_custom_plan"
    p = await asyncpg.create_pool(
        settings.postgres_dsn,
        min_size=settings.postgres_pool_min,
        max_size=settings.postgres_pool_max,
        init=_init,
        # Unnamed statements by default: works behind PgBouncer in transaction mode too.
        statement_cache_size=100 if cache_statements else 0,
        reset=_keep_session if cache_statements else None,
        server_settings=server_settings or None,
    )
    try:
        yield p
    finally:
        await p.close()


def migration_files() -> list[tuple[int, str, str]]:
    out = []
    for item in resources.files("duetime.migrations").iterdir():
        if item.name.endswith(".sql"):
            number = int(item.name.split("_", 1)[0])
            out.append((number, item.name, item.read_text()))
    return sorted(out)


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; several instances may run this at once."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for number, name, text in migration_files():
            if number in done:
                continue
            async with conn.transaction():
                await conn.execute(text)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", number, name
                )
            log.info("migration applied", extra={"migration": name})
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        await conn.close()
    return applied
