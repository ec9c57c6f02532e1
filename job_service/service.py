"""Composition root of the job service."""

from __future__ import annotations

from typing import Any

import asyncpg
from pydantic import Field

from duetime import kafka, postgres
from duetime.development_secrets import refuse_development_secrets
from duetime.job_ids import JobIds
from duetime.kafka_targets import TopicPolicy
from duetime.lifecycle import Lifecycle
from duetime.objects.settings import ObjectStoreSettings, open_store
from duetime.ops import serve
from duetime.problems import ProblemError
from duetime.redis_client import redis_client
from duetime.settings import (
    GatewaySettings,
    HttpSettings,
    IdSettings,
    JobLimitSettings,
    KafkaSettings,
    KafkaTargetSettings,
    PostgresSettings,
    QuotaSettings,
    RedisSettings,
)
from duetime.sql import load_queries
from duetime.tenant_assertion import TenantAssertions
from job_service.api import build_app
from job_service.apply import PostgresJobStore
from job_service.idempotency import IdempotencyStore
from job_service.publisher import CommandPublisher
from job_service.quotas import Quotas
from job_service.signing_secrets import SigningSecretRoutes
from job_service.sources import SourceRoutes
from job_service.usage import QUERIES as USAGE_QUERIES
from job_service.usage import UsageCache, postgres_reader

QUERIES = load_queries("job_service")
STORE_DOWN = "the job store is not answering; the command was not accepted; retry later"


class Settings(KafkaSettings, KafkaTargetSettings, PostgresSettings, RedisSettings, HttpSettings,
               IdSettings, JobLimitSettings, QuotaSettings, GatewaySettings):
    http_port: int = 18101
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    # Two are enough to rotate; a few more let teams overlap rotations (ADR 0019).
    signing_secrets_per_tenant: int = Field(default=5, ge=2, le=100)
    # Valid creates answered without FastAPI's machinery (job_service.express, ADR 0054); off
    # only to rule the lane out when chasing a difference.
    express_creates: bool = True


async def main(lifecycle: Lifecycle) -> None:
    settings = Settings()
    refuse_development_secrets(settings)
    settings.kafka_request_timeout_ms = int(settings.publish_timeout_seconds * 1000)
    redis = redis_client(settings)
    async with postgres.pool(settings) as pool, \
            kafka.producer(settings, "job_service") as producer, \
            open_store(ObjectStoreSettings()) as store:

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

        async def stored(tenant: str, job_id: str) -> tuple[str, dict[str, Any]] | None:
            row = await pool.fetchrow(USAGE_QUERIES["job_state_and_spec"], job_id, tenant)
            return None if row is None else (row["state"], row["spec"])

        lifecycle.checks["redis"] = redis_ok
        usage = UsageCache(postgres_reader(pool), settings.quota_refresh_seconds)
        app = build_app(lifecycle, CommandPublisher(producer, settings.publish_timeout_seconds),
                        IdempotencyStore(redis), lookup,
                        JobIds(settings.id_secret),
                        TenantAssertions(settings.gateway_secret, settings.assertion_max_age_seconds),
                        Quotas(settings, usage, stored), settings,
                        TopicPolicy(settings), PostgresJobStore(pool),
                        express=settings.express_creates)
        app.include_router(SigningSecretRoutes(pool, settings.signing_secrets_per_tenant).router())
        app.include_router(SourceRoutes(store).router())
        lifecycle.ready = True
        try:
            await lifecycle.supervise(
                {"http": serve(app, settings.http_host, settings.http_port, lifecycle)})
        finally:
            await usage.aclose()
            await redis.aclose()
