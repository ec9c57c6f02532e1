"""Composition root of the search service."""

from __future__ import annotations

from duetime import postgres
from duetime.development_secrets import refuse_development_secrets
from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.ops import serve
from duetime.settings import GatewaySettings, HttpSettings, IdSettings, PostgresSettings
from duetime.sql import load_queries
from duetime.tenant_assertion import TenantAssertions
from search_service.api import build_app

QUERIES = load_queries("search_service")


class Settings(PostgresSettings, HttpSettings, IdSettings, GatewaySettings):
    http_port: int = 18102


async def main(lifecycle: Lifecycle) -> None:
    settings = Settings()
    refuse_development_secrets(settings)
    async with postgres.pool(settings) as pool:

        async def db_ok() -> bool:
            return bool(await pool.fetchval("SELECT true"))

        lifecycle.checks["postgres"] = db_ok
        lifecycle.ready = True
        assertions = TenantAssertions(settings.gateway_secret, settings.assertion_max_age_seconds)
        app = build_app(lifecycle, pool, QUERIES, JobIds(settings.id_secret), assertions)
        await lifecycle.supervise(
            {"http": serve(app, settings.http_host, settings.http_port, lifecycle)})
