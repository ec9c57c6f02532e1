"""Fixtures for in-process service tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from duetime import postgres
from duetime.postgres import migrate
from duetime.settings import PostgresSettings
from tests.support.pipeline import pipeline

__all__ = ["due_prefix", "fresh_db", "pipeline"]


@pytest.fixture
async def due_prefix(redis: Redis) -> AsyncIterator[str]:
    """A due-set key prefix of the test's own on the real Redis, its keys deleted after."""
    prefix = f"test{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def fresh_db(env: dict[str, str], pg: asyncpg.Pool[Any]) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A database of its own, migrated: for code whose queries span every job or run."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    await pg.execute(f'CREATE DATABASE "{name}"')
    dsn = f"{env['DUETIME_POSTGRES_DSN'].rsplit('/', 1)[0]}/{name}"
    try:
        await migrate(dsn)
        async with postgres.pool(PostgresSettings(postgres_dsn=dsn, postgres_pool_max=2)) as pool:
            yield pool  # with the services' codecs: jsonb in and out as Python values
    finally:
        await pg.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
