"""The Redis client every service uses."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.maint_notifications import MaintNotificationsConfig

from duetime.settings import RedisSettings


def redis_client(settings: RedisSettings) -> Redis:
    # A blocking pool: under a burst, callers wait briefly for a connection instead of failing
    # with MaxConnectionsError (which would turn a burst into retries and duplicate work).
    # Maintenance notifications off: they are a managed-Redis feature we do not use, and while
    # they are on ("auto", the default over RESP3) redis-py 8.1's pool skips its check for
    # connections the server closed (redis/redis-py#4252), so after a Redis restart the first
    # command on every pooled connection failed — a 500 from the job service (ADR 0052).
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_seconds,
        maint_notifications_config=MaintNotificationsConfig(enabled=False))
    return Redis(connection_pool=pool)
