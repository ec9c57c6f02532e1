"""Composition root of the search service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from pydantic import Field

from duetime import postgres
from duetime.development_secrets import refuse_development_secrets
from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.objects.settings import ObjectStoreSettings, open_store
from duetime.ops import serve
from duetime.settings import GatewaySettings, HttpSettings, IdSettings, PostgresSettings
from duetime.sql import load_queries
from duetime.tenant_assertion import TenantAssertions
from search_service.api import build_app
from search_service.output import OutputRoutes
from search_service.query_limits import DEFAULT_STATEMENT_TIMEOUT_MS
from search_service.signing_secrets import SigningSecretList
from search_service.sources import SourceReads

QUERIES = load_queries("search_service")


class Settings(PostgresSettings, HttpSettings, IdSettings, GatewaySettings):
    http_port: int = 18102
    # Postgres stops any read query running longer (docs/quotas.md): DUETIME_READ_STATEMENT_TIMEOUT_MS.
    read_statement_timeout_ms: int = Field(default=DEFAULT_STATEMENT_TIMEOUT_MS, ge=10,
                                           le=600_000)
    # The dashboard's overview reads installation-wide numbers there (DUETIME_PROMETHEUS_URL).
    prometheus_url: str | None = None


@asynccontextmanager
async def read_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool[Any]]:
    """The search service's connections: every statement under the read API's time limit;
    its reads take no session state, so their statements stay prepared (ADR 0046)."""
    async with postgres.pool(settings, statement_timeout_ms=settings.read_statement_timeout_ms,
                             cache_statements=True) as pool:
        yield pool


async def main(lifecycle: Lifecycle) -> None:
    settings = Settings()
    refuse_development_secrets(settings)
    timeout_ms = settings.read_statement_timeout_ms
    store_settings = ObjectStoreSettings()
    async with read_pool(settings) as pool, open_store(store_settings) as store:

        async def db_ok() -> bool:
            return bool(await pool.fetchval("SELECT true"))

        lifecycle.checks["postgres"] = db_ok
        lifecycle.ready = True
        assertions = TenantAssertions(settings.gateway_secret, settings.assertion_max_age_seconds)
        app = build_app(lifecycle, pool, QUERIES, JobIds(settings.id_secret), assertions,
                        timeout_ms, settings.prometheus_url)
        app.include_router(SigningSecretList(pool).router())
        app.include_router(OutputRoutes(pool, QUERIES, store,
                                        store_settings.output_retention_days).router())
        app.include_router(SourceReads(store).router())
        await lifecycle.supervise(
            {"http": serve(app, settings.http_host, settings.http_port, lifecycle)})
