"""Health, readiness and Prometheus metrics endpoints, and the HTTP server every service runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator

import uvicorn
from fastapi import APIRouter, FastAPI, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from duetime.lifecycle import Lifecycle

# FastAPI's own OpenTelemetry hooks (tracing, metrics, logs per request) are off: duetime's
# metrics are Prometheus' (docs/metrics.md) and no service configures a tracer. Left on, every
# request still looks up three providers to find them unconfigured (~7 % of the search
# service's CPU per request with the proxy headers below; docs/benchmarks.md).
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False,
                                 "operation_spans": False}


def ops_router(lifecycle: Lifecycle) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": lifecycle.name}

    @router.get("/readyz", include_in_schema=False)
    async def readyz(response: Response) -> dict[str, object]:
        checks = await lifecycle.readiness()
        ok = all(checks.values())
        response.status_code = 200 if ok else 503
        return {"ready": ok, "checks": checks}

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def ops_app(lifecycle: Lifecycle) -> FastAPI:
    app = FastAPI(title=f"duetime {lifecycle.name}", docs_url=None, redoc_url=None,
                  telemetry=NO_TELEMETRY)
    app.include_router(ops_router(lifecycle))
    return app


class _Server(uvicorn.Server):
    # The service owns SIGTERM (see Lifecycle); uvicorn must not capture and re-raise it.
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


# Longer than the gateway keeps an idle upstream connection (60 s, deploy/*/nginx.conf): nginx
# closes it first, so it never sends a request on a connection being closed here (uvicorn's own
# default, 5 s, is shorter than nginx's).
KEEP_ALIVE_SECONDS = 75


def server_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                          lifespan="off", timeout_graceful_shutdown=10,
                          timeout_keep_alive=KEEP_ALIVE_SECONDS,
                          # Nothing reads the client's address, and the dashboard reads
                          # X-Forwarded-Proto itself: no rewriting of every request's scope.
                          proxy_headers=False)


async def serve(app: FastAPI, host: str, port: int, lifecycle: Lifecycle) -> None:
    """Serve `app` until the lifecycle stops; in-flight requests get uvicorn's graceful drain."""
    config = server_config(app, host, port)
    server = _Server(config)

    async def _watch() -> None:
        await lifecycle.stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(_watch())
    try:
        await server.serve()
    finally:
        watcher.cancel()
    if not lifecycle.stop.is_set() and not server.started:
        raise RuntimeError(f"HTTP server on {host}:{port} did not start")
