"""Per-tenant quotas on the write path (issue 7 hole 6; docs/quotas.md, ADR 0020).

- creates per second: a token bucket per tenant in this replica (one second of burst) → 429;
- active jobs (active or paused) → 429 on create;
- firings per second, the summed peak rate of the tenant's active recurring jobs
  (duetime.firing_rate) → 429 on create, update and resume; one job faster than the whole quota
  → 422, it could never fit.

A 429 names the quota, its limit and the usage it saw, as problem+json extension members. Usage
comes from job_service.usage: no query per request (see there for how stale it may be). A create
reserves its room before it is published and gives it back if the publish fails, so concurrent
creates cannot all pass the same check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import ValidationError

from duetime.firing_rate import peak_rate
from duetime.problems import PROBLEM_JSON, ProblemError
from duetime.settings import QuotaSettings
from job_service.usage import Usage, UsageCache
from schemas.api import JobSpec

# The state and spec of a job of this tenant, or None if it is not stored (yet).
StoredJob = Callable[[str, str], Awaitable[tuple[str, dict[str, Any]] | None]]
# No schedule fires faster than once a second (interval ≥ 1 s; cron has seconds).
MAX_JOB_RATE = 1.0
REFUSED = Counter("duetime_quota_refusals_total", "Requests refused by a per-tenant quota",
                  ["quota"])


class QuotaExceeded(ProblemError):
    def __init__(self, quota: str, limit: float, usage: float, detail: str,
                 retry_after: float) -> None:
        super().__init__(429, "Quota exceeded", detail,
                         headers={"Retry-After": str(max(1, math.ceil(retry_after)))})
        self.quota, self.limit, self.usage = quota, limit, usage
        REFUSED.labels(quota).inc()


def install(app: FastAPI) -> None:
    """Answer QuotaExceeded with its quota, limit and usage as extension members (RFC 9457)."""
    async def exceeded(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, QuotaExceeded)
        body = {"type": "about:blank", "title": exc.title, "status": exc.status,
                "detail": exc.detail, "quota": exc.quota, "limit": exc.limit,
                "usage": exc.usage}
        return JSONResponse(body, status_code=exc.status, media_type=PROBLEM_JSON,
                            headers=exc.headers)
    app.add_exception_handler(QuotaExceeded, exceeded)


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass(frozen=True)
class Reservation:
    """Room taken for one accepted command; `release` gives it back if it was not published."""

    cache: UsageCache
    tenant: str
    jobs: int = 0
    rate: float = 0.0

    def release(self) -> None:
        if self.jobs or self.rate:
            self.cache.record(self.tenant, -self.jobs, -self.rate)


def _rate_text(rate: float) -> str:
    return f"{rate:.4g}/s"


class Quotas:
    def __init__(self, settings: QuotaSettings, usage: UsageCache,
                 stored: StoredJob | None = None) -> None:
        self.settings, self.usage, self.stored = settings, usage, stored
        self.buckets: dict[str, _Bucket] = {}

    def _take_create(self, tenant: str) -> None:
        limit, now = self.settings.quota_creates_per_second, time.monotonic()
        burst = max(1.0, limit)  # one second's worth, and at least one create
        bucket = self.buckets.setdefault(tenant, _Bucket(burst, now))
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * limit)
        bucket.at = now
        if bucket.tokens < 1:
            raise QuotaExceeded("creates_per_second", limit, limit,
                                f"more than {limit:g} jobs created per second; slow down",
                                1 / limit)
        bucket.tokens -= 1

    def _check_alone(self, rate: float) -> None:
        limit = self.settings.quota_firings_per_second
        if rate > limit:
            message = f"fires up to {_rate_text(rate)}: more than the tenant's whole quota " \
                      f"of {_rate_text(limit)}"
            raise ProblemError(422, "Invalid request", message,
                               [{"field": "schedule", "message": message}])

    def _check_rate(self, seen: Usage, added: float) -> None:
        limit = self.settings.quota_firings_per_second
        if added > 0 and seen.rate + added > limit + 1e-9:
            raise QuotaExceeded(
                "firings_per_second", limit, round(seen.rate, 6),
                f"the tenant's active recurring jobs fire up to {_rate_text(seen.rate)}; this "
                f"job adds {_rate_text(added)}, over the quota of {_rate_text(limit)}: pause, "
                "slow down or cancel recurring jobs", self.settings.quota_refresh_seconds)

    def check_alone(self, spec: JobSpec) -> None:
        """422 for a job faster than the tenant's whole firing quota: it could never fit (what
        admit_create/admit_update check first; an apply checks it before sending anything)."""
        self._check_alone(peak_rate(spec))

    async def admit_create(self, tenant: str, spec: JobSpec) -> Reservation:
        rate = peak_rate(spec)
        self._check_alone(rate)
        self._take_create(tenant)
        seen = await self.usage.usage(tenant)
        limit = self.settings.quota_active_jobs
        if seen.jobs + 1 > limit:
            raise QuotaExceeded("active_jobs", limit, seen.jobs,
                                f"the tenant has {seen.jobs} active or paused jobs; the quota is "
                                f"{limit}: cancel jobs to make room",
                                self.settings.quota_refresh_seconds)
        self._check_rate(seen, rate)
        self.usage.record(tenant, 1, rate)
        return Reservation(self.usage, tenant, 1, rate)

    async def _stored_rate(self, tenant: str, job_id: str) -> tuple[str, float] | None:
        """The stored job's state and peak rate; None if it is not stored (yet)."""
        found = None if self.stored is None else await self.stored(tenant, job_id)
        if found is None:
            return None
        try:
            return found[0], peak_rate(JobSpec.model_validate(found[1]))
        except (ValidationError, ValueError):  # stored under older rules: count it at most
            return found[0], MAX_JOB_RATE

    def _reserve_rate(self, tenant: str, seen: Usage, added: float) -> Reservation:
        self._check_rate(seen, added)
        if added <= 0:
            return Reservation(self.usage, tenant)
        self.usage.record(tenant, 0, added)
        return Reservation(self.usage, tenant, 0, added)

    async def admit_update(self, tenant: str, job_id: str, spec: JobSpec) -> Reservation:
        rate = peak_rate(spec)
        self._check_alone(rate)
        seen = await self.usage.usage(tenant)
        if seen.rate + rate <= self.settings.quota_firings_per_second:
            return Reservation(self.usage, tenant)  # fits whatever the job had: no query
        stored = await self._stored_rate(tenant, job_id)
        if stored is not None and stored[0] != "active":
            return Reservation(self.usage, tenant)  # not firing: its resume is checked
        return self._reserve_rate(tenant, seen, rate - (stored[1] if stored else 0.0))

    async def admit_resume(self, tenant: str, job_id: str) -> Reservation:
        seen = await self.usage.usage(tenant)
        if seen.rate + MAX_JOB_RATE <= self.settings.quota_firings_per_second:
            return Reservation(self.usage, tenant)  # fits whatever the job is: no query
        stored = await self._stored_rate(tenant, job_id)
        if stored is None or stored[0] != "paused":
            return Reservation(self.usage, tenant)  # resuming it changes nothing
        return self._reserve_rate(tenant, seen, stored[1])
