"""Issue 7 hole 7: Postgres and Redis refuse clients without the stack's password."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError


def without_password(url: str, password: str | None = None) -> str:
    parts = urlsplit(url)
    user = parts.username or ""
    auth = f"{user}:{password}@" if password is not None else f"{user}@" if user else ""
    netloc = f"{auth}{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.mark.parametrize("password", [None, "wrong"], ids=["no-password", "wrong-password"])
async def test_postgres_refuses_a_client_without_the_password(env: dict[str, str],
                                                              password: str | None) -> None:
    dsn = env["DUETIME_POSTGRES_DSN"]
    assert urlsplit(dsn).password  # the stack's own DSN carries one
    with pytest.raises((asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError,
                        asyncpg.ClientConfigurationError)):
        conn = await asyncpg.connect(without_password(dsn, password), timeout=10)
        await conn.close()


async def test_postgres_takes_the_stack_password(env: dict[str, str]) -> None:
    conn = await asyncpg.connect(env["DUETIME_POSTGRES_DSN"], timeout=10)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


@pytest.mark.parametrize("url_user", ["", "default", "duetime"])
async def test_redis_refuses_a_client_without_the_password(env: dict[str, str],
                                                           url_user: str) -> None:
    parts = urlsplit(env["DUETIME_REDIS_URL"])
    assert parts.password
    auth = f"{url_user}:wrong@" if url_user else ""
    client = Redis.from_url(urlunsplit(parts._replace(
        netloc=f"{auth}{parts.hostname}:{parts.port}")))
    try:
        with pytest.raises((AuthenticationError, ResponseError)):
            await client.set("security:probe", "written-without-a-password")
    finally:
        await client.aclose()


async def test_redis_takes_the_stack_password(redis: Redis) -> None:
    assert await redis.ping()
