"""Helpers for e2e tests that create jobs through the gateway and read them back."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx

from tests.support.waiting import eventually


def http_job(url: str, schedule: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "e2e", "schedule": schedule, "target": {"type": "http", "url": url},
            **extra}


async def create(api: httpx.AsyncClient, spec: dict[str, Any]) -> str:
    resp = await api.post("/jobs", json=spec)
    assert resp.status_code == 202, resp.text
    job_id: str = resp.json()["job_id"]
    await eventually(lambda: get_job(api, job_id), timeout=15)
    return job_id


async def get_job(api: httpx.AsyncClient, job_id: str) -> dict[str, Any] | None:
    """The persisted job; None while it is unknown or still `pending` (accepted, not stored)."""
    resp = await api.get(f"/jobs/{job_id}")
    if resp.status_code != 200 or resp.json()["state"] == "pending":
        return None
    job: dict[str, Any] = resp.json()
    return job


async def runs(api: httpx.AsyncClient, job_id: str, **params: Any) -> list[dict[str, Any]]:
    resp = await api.get(f"/jobs/{job_id}/runs", params={"limit": 500, **params})
    return resp.json()["items"] if resp.status_code == 200 else []


async def wait_state(api: httpx.AsyncClient, job_id: str, state: str,
                     timeout: float = 20) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        job = await get_job(api, job_id)
        return job if job and job["state"] == state else None

    return await eventually(check, timeout=timeout)


async def wait_runs(api: httpx.AsyncClient, job_id: str, status: str, count: int = 1,
                    timeout: float = 20) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        found = [r for r in await runs(api, job_id) if r["status"] == status]
        return found if len(found) >= count else None

    return await eventually(check, timeout=timeout, interval=0.2)


class Cleanup:
    """Jobs a test created; the `jobs` fixture cancels every one of them after the test, even
    when it failed, so a broken test leaves nothing firing behind it."""

    def __init__(self) -> None:
        self._created: list[tuple[httpx.AsyncClient, str]] = []

    def track(self, api: httpx.AsyncClient, job_id: str) -> str:
        self._created.append((api, job_id))
        return job_id

    async def create(self, api: httpx.AsyncClient, spec: dict[str, Any]) -> str:
        """`create`, and cancel the job after the test."""
        return self.track(api, await create(api, spec))

    async def cancel_all(self) -> None:
        for api, job_id in reversed(self._created):
            # Best effort: after a fault test the gateway may still be coming back.
            with contextlib.suppress(httpx.HTTPError):
                await api.delete(f"/jobs/{job_id}")
