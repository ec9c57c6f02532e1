"""Composition root of the job service."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import Field

from duetime import kafka, postgres
from duetime.development_secrets import refuse_development_secrets
from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.ops import serve
from duetime.problems import ProblemError
from duetime.redis_client import redis_client
from duetime.settings import (
    GatewaySettings,
    HttpSettings,
    IdSettings,
    KafkaSettings,
    PostgresSettings,
    RedisSettings,
)
from duetime.sql import load_queries
from duetime.tenant_assertion import TenantAssertions
from job_service.api import build_app
from job_service.idempotency import IdempotencyStore
from job_service.publisher import CommandPublisher

QUERIES = load_queries("job_service")
STORE_DOWN = "the job store is not answering; the command was not accepted; retry later"


class Settings(KafkaSettings, PostgresSettings, RedisSettings, HttpSettings, IdSettings,
               GatewaySettings):
    http_port: int = 18101
    publish_timeout_seconds: float = Field(default=5.0, gt=0)


async def main(lifecycle: Lifecycle) -> None:
    settings = Settings()
    refuse_development_secrets(settings)
    settings.kafka_request_timeout_ms = int(settings.publish_timeout_seconds * 1000)
    redis = redis_client(settings)
    async with postgres.pool(settings) as pool, kafka.producer(settings, "job_service") as producer:

        async def lookup(job_id: str) -> tuple[str, dict[str, Any]] | None:
            try:
                row = await pool.fetchrow(QUERIES["job_owner_and_spec"], job_id)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                # Nothing was published yet: a clear 503 the client can retry, not a 500.
                raise ProblemError(503, "Service unavailable", STORE_DOWN,
                                   headers={"Retry-After": "2"}) from exc
            return None if row is None else (row["tenant"], row["spec"])

        async def redis_ok() -> bool:
            return bool(await redis.ping())

        lifecycle.checks["redis"] = redis_ok
        app = build_app(lifecycle, CommandPublisher(producer, settings.publish_timeout_seconds),
                        IdempotencyStore(redis), lookup,
                        JobIds(settings.id_secret),
                        TenantAssertions(settings.gateway_secret, settings.assertion_max_age_seconds))
        lifecycle.ready = True
        try:
            await lifecycle.supervise(
                {"http": serve(app, settings.http_host, settings.http_port, lifecycle)})
        finally:
            await redis.aclose()
