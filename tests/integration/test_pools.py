"""The search service's and the writer's pools keep statements prepared, and their plans
custom (ADR 0046, 0048, 0005)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import asyncpg

from search_service.filters import JobsQuery, parse_query
from search_service.listing import jobs_statement
from search_service.service import QUERIES, Settings, read_pool
from tests.integration.conftest import fresh_db
from writer.service import QUERIES as WRITER_QUERIES
from writer.service import Settings as WriterSettings
from writer.service import transient, write_pool

__all__ = ["fresh_db"]


async def _dsn_of(env: dict[str, str], db: asyncpg.Pool[Any]) -> str:
    """The DSN of the test's own database, for a pool opened the search service's way."""
    name = await db.fetchval("SELECT current_database()")
    return f"{env['DUETIME_POSTGRES_DSN'].rsplit('/', 1)[0]}/{name}"


async def test_listings_stay_prepared_and_custom_planned(env: dict[str, str],
                                                         fresh_db: asyncpg.Pool[Any]) -> None:
    # A generic plan of the catch-all listing would keep every `$n IS NULL OR ...` and use no
    # index: Postgres switches a prepared statement to one after five runs unless told not to.
    dsn = await _dsn_of(env, fresh_db)
    st = jobs_statement(parse_query(JobsQuery, parse_qsl("state=active&label=team:red")), "t")
    async with read_pool(Settings(postgres_dsn=dsn, postgres_pool_max=1)) as pool:
        for _ in range(8):
            assert await pool.fetch(QUERIES[st.query], *st.args) == []
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
            plans = await conn.fetch("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                                     " WHERE statement = $1", QUERIES[st.query])
    # One statement prepared once on the pool's one connection, planned with the values each time.
    assert [tuple(p) for p in plans] == [(0, 8)]


async def test_a_released_connection_keeps_no_open_transaction(env: dict[str, str],
                                                               fresh_db: asyncpg.Pool[Any]) -> None:
    # The pool skips the reset query on release; an open transaction is still rolled back. That
    # rollback is asyncpg's (it runs before a custom reset): no line of ours can break it, so
    # this guards the behaviour ADR 0046 relies on across asyncpg upgrades.
    dsn = await _dsn_of(env, fresh_db)
    async with read_pool(Settings(postgres_dsn=dsn, postgres_pool_max=1)) as pool:
        conn = await pool.acquire()
        tx = conn.transaction()
        await tx.start()
        await conn.fetchval("SELECT 1")
        await pool.release(conn)
        async with pool.acquire() as again:
            assert not again.is_in_transaction()


async def test_the_writers_statements_stay_prepared(env: dict[str, str],
                                                    fresh_db: asyncpg.Pool[Any]) -> None:
    # At 200 firings/s each status is a batch of its own: a Parse per statement and a reset
    # query per release were a quarter of Postgres' CPU (ADR 0048).
    dsn = await _dsn_of(env, fresh_db)
    query = WRITER_QUERIES["recurring_schedules"]
    async with write_pool(WriterSettings(postgres_dsn=dsn, postgres_pool_max=1)) as pool:
        for _ in range(6):
            async with pool.acquire() as conn, conn.transaction():
                assert await conn.fetch(query, ["j1", "j2"]) == []
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW plan_cache_mode") == "force_custom_plan"
            plans = await conn.fetch("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                                     " WHERE statement = $1", query)
    assert [tuple(p) for p in plans] == [(0, 6)]


async def test_a_migration_under_a_prepared_statement_is_retried_not_dead_lettered(
        env: dict[str, str], fresh_db: asyncpg.Pool[Any]) -> None:
    # A migration that changes a column's type changes what a prepared statement returns:
    # Postgres refuses the next run of it inside a transaction. The writer must retry that
    # batch (asyncpg has dropped its cache), never dead-letter its messages.
    dsn = await _dsn_of(env, fresh_db)
    query = WRITER_QUERIES["applied_before"]
    async with write_pool(WriterSettings(postgres_dsn=dsn, postgres_pool_max=1)) as pool:
        async with pool.acquire() as conn, conn.transaction():
            await conn.fetch(query, ["j1"])
        await fresh_db.execute("ALTER TABLE applied_commands ALTER COLUMN command_id TYPE varchar")
        refused: BaseException | None = None
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.fetch(query, ["j1"])
        except asyncpg.PostgresError as exc:
            refused = exc
        assert isinstance(refused, asyncpg.InvalidCachedStatementError)
        assert transient(refused)
        async with pool.acquire() as conn, conn.transaction():
            assert await conn.fetch(query, ["j1"]) == []  # the retry prepares it again
