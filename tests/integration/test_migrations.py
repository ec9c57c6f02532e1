"""Migrations apply from nothing, concurrently, and a second run applies nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from duetime.postgres import migrate, migration_files


@pytest.fixture
async def fresh_dsn(env: dict[str, str], pg: asyncpg.Pool[Any]) -> AsyncIterator[str]:
    name = f"migtest_{uuid.uuid4().hex[:10]}"
    await pg.execute(f'CREATE DATABASE "{name}"')
    base = env["DUETIME_POSTGRES_DSN"].rsplit("/", 1)[0]
    yield f"{base}/{name}"
    await pg.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_migrations_apply_once_even_when_run_concurrently(fresh_dsn: str) -> None:
    results = await asyncio.gather(*(migrate(fresh_dsn) for _ in range(3)))
    applied = sorted(name for names in results for name in names)
    assert applied == [name for _, name, _ in migration_files()]
    assert await migrate(fresh_dsn) == []
    conn = await asyncpg.connect(fresh_dsn)
    try:
        tables = {r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"jobs", "job_runs", "job_runs_default", "schema_migrations"} <= tables
        indexes = {r["indexname"] for r in await conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'")}
        assert "jobs_enqueue_at_active" in indexes
        partitions = await conn.fetchval(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'job_runs'::regclass")
        assert partitions >= 4
    finally:
        await conn.close()
