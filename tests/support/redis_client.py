"""The tests' Redis client across a restart of the stack's Redis."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ConnectionError

from tests.support.waiting import eventually


async def reconnected(redis: Redis, timeout: float = 15) -> None:
    """The session's client saw its connection closed: let it reconnect before others use it."""
    async def answers() -> bool:
        try:
            return bool(await redis.ping())
        except ConnectionError:
            return False

    await eventually(answers, timeout=timeout)
