"""Idempotency-Key on POST /jobs: same key and body give the same job; another body is a 409."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from redis.asyncio import Redis

TTL_SECONDS = 24 * 3600


def body_hash(body: Any) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class IdempotencyStore:
    def __init__(self, redis: Redis, prefix: str = "dt") -> None:
        self.redis = redis
        self.prefix = prefix

    async def reserve(self, tenant: str, key: str, digest: str) -> bool:
        """True if the key is new or was used with the same body; False on a different body."""
        rkey = f"{self.prefix}:idem:{tenant}:{hashlib.sha256(key.encode()).hexdigest()}"
        created = await self.redis.set(rkey, digest, nx=True, ex=TTL_SECONDS)
        if created:
            return True
        stored = await self.redis.get(rkey)
        return stored is not None and (stored.decode() if isinstance(stored, bytes) else stored) == digest
