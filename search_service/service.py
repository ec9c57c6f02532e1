"""Composition root of the search service."""

from __future__ import annotations

from duetime import postgres
from duetime.job_ids import JobIds
from duetime.lifecycle import Lifecycle
from duetime.ops import serve
from duetime.settings import HttpSettings, IdSettings, PostgresSettings
from duetime.sql import load_queries
from search_service.api import build_app
from search_service.signing_secrets import SigningSecretList

QUERIES = load_queries("search_service")


class Settings(PostgresSettings, HttpSettings, IdSettings):
    http_port: int = 18102


async def main(lifecycle: Lifecycle) -> None:
    settings = Settings()
    async with postgres.pool(settings) as pool:

        async def db_ok() -> bool:
            return bool(await pool.fetchval("SELECT true"))

        lifecycle.checks["postgres"] = db_ok
        lifecycle.ready = True
        app = build_app(lifecycle, pool, QUERIES, JobIds(settings.id_secret))
        app.include_router(SigningSecretList(pool).router())
        await lifecycle.supervise(
            {"http": serve(app, settings.http_host, settings.http_port, lifecycle)})
