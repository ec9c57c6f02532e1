"""API latency by route: one histogram for the job and search services (docs/metrics.md).

Pure ASGI, outermost, so it times what a caller waits for (authentication and error answers
included). The route is the matched path template (`/jobs/{job_id}`), never the raw path: ids
in a label would make a series per job.
"""

from __future__ import annotations

import time

from prometheus_client import Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_SECONDS = Histogram(
    "duetime_http_request_duration_seconds", "Time to answer an API request",
    ["route", "method", "status"],  # the service is the scrape target's label
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
# Not timed: the scrapers' and probes' own endpoints.
UNTIMED = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED = "unmatched"  # no route matched (404s, and 401s answered before routing)


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTIMED:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            REQUEST_SECONDS.labels(getattr(route, "path", UNMATCHED),
                                   scope["method"], str(status)).observe(
                time.perf_counter() - started)
