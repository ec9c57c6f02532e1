"""The Redis client every service uses."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from duetime.settings import RedisSettings


def redis_client(settings: RedisSettings) -> Redis:
    # A blocking pool: under a burst, callers wait briefly for a connection instead of failing
    # with MaxConnectionsError (which would turn a burst into retries and duplicate work).
    pool = BlockingConnectionPool.from_url(settings.redis_url,
                                           max_connections=settings.redis_max_connections,
                                           timeout=settings.redis_pool_timeout_seconds)
    return Redis(connection_pool=pool)
