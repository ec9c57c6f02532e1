"""The stack's consumers answer /readyz "connected and caught up"; /healthz stays liveness."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.support.waiting import eventually

CONSUMERS = {"writer": ("18103", {"caught_up"}),
             "executor": ("18106", {"caught_up", "notifier_caught_up"})}


@pytest.mark.parametrize("service", sorted(CONSUMERS))
async def test_a_consumer_is_ready_once_caught_up(service: str) -> None:
    default, checks = CONSUMERS[service]
    port = os.environ.get(f"DUETIME_{service.upper()}_PORT", default)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        async def ready() -> dict[str, bool] | None:
            resp = await client.get("/readyz")
            found: dict[str, bool] = resp.json()["checks"]
            return found if resp.status_code == 200 else None

        found = await eventually(ready, timeout=30)
        assert checks <= set(found) and all(found.values())
        live = await client.get("/healthz")
        assert live.status_code == 200 and live.json()["status"] == "ok"
