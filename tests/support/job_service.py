"""The job service in process, on the stack's real Kafka, Postgres and Redis, with the settings a
test chooses (tight quotas, say); the stack's writer stores what it publishes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from duetime import kafka, postgres
from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.settings import (
    IdSettings,
    JobLimitSettings,
    PostgresSettings,
    QuotaSettings,
)
from duetime.tenant_assertion import TenantAssertions
from job_service.api import build_app
from job_service.apply import PostgresJobStore
from job_service.idempotency import IdempotencyStore
from job_service.publisher import CommandPublisher
from job_service.quotas import Quotas
from job_service.usage import QUERIES, UsageCache, postgres_reader
from tests.support.gateway import AsTenant
from tests.support.kafka import kafka_settings as kafka_settings_of


class RecordingProducer:
    """The real producer; keeps every command it was asked to send, so a test can show that a
    refused request published nothing."""

    def __init__(self, real: AIOKafkaProducer) -> None:
        self.real = real
        self.commands: list[dict[str, Any]] = []

    async def send(self, topic: str, value: bytes, **options: Any) -> Any:
        self.commands.append(orjson.loads(value))
        return await self.real.send(topic, value, **options)


@dataclass
class InProcess:
    app: Any
    producer: RecordingProducer
    pool: asyncpg.Pool[Any]
    assertions: TenantAssertions
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self, tenant: str) -> httpx.AsyncClient:
        """A client that the service takes for `tenant` (as the gateway would say)."""
        c = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                              base_url="http://job-service",
                              auth=AsTenant(self.assertions, tenant))
        self.clients.append(c)
        return c

    def published(self, tenant: str, kind: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.producer.commands
                if c["tenant"] == tenant and (kind is None or c["type"] == kind)]


@asynccontextmanager
async def job_service(env: dict[str, str], redis: Redis, quotas: QuotaSettings | None = None,
                      limits: JobLimitSettings | None = None) -> AsyncIterator[InProcess]:
    kafka_settings = kafka_settings_of(env)
    pg_settings = PostgresSettings(postgres_dsn=env["DUETIME_POSTGRES_DSN"], postgres_pool_max=4)
    quota_settings = quotas or QuotaSettings()
    async with postgres.pool(pg_settings) as pool, \
            kafka.producer(kafka_settings, f"test-{uuid.uuid4().hex[:8]}") as real:
        producer = RecordingProducer(real)

        async def lookup(job_id: str) -> tuple[str, dict[str, Any]] | None:
            row = await pool.fetchrow("SELECT tenant, spec FROM jobs WHERE job_id = $1", job_id)
            return None if row is None else (row["tenant"], row["spec"])

        async def stored(tenant: str, job_id: str) -> tuple[str, dict[str, Any]] | None:
            row = await pool.fetchrow(QUERIES["job_state_and_spec"], job_id, tenant)
            return None if row is None else (row["state"], row["spec"])

        usage = UsageCache(postgres_reader(pool), quota_settings.quota_refresh_seconds)
        secret = env.get("DUETIME_ID_SECRET", IdSettings().id_secret)
        assertions = TenantAssertions(f"in-process-gateway-secret-{uuid.uuid4().hex}")
        app = build_app(Lifecycle("job_service"), CommandPublisher(producer, 5.0),
                        IdempotencyStore(redis, prefix=f"test{uuid.uuid4().hex[:8]}"), lookup,
                        JobIds(secret), assertions, Quotas(quota_settings, usage, stored),
                        limits or JobLimitSettings(), store=PostgresJobStore(pool))
        service = InProcess(app, producer, pool, assertions)
        try:
            yield service
        finally:
            for c in service.clients:
                await c.aclose()
            await usage.aclose()
