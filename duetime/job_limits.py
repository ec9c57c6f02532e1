"""Operator limits on what one job may ask for (issue 7 hole 6; docs/quotas.md, ADR 0020).

Stateless: a job is checked on its own, so the job service (create, PUT, the merged result of a
PATCH) and the writer (Kafka ingress commands) refuse the same jobs for the same reasons.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from duetime.settings import JobLimitSettings
from schemas.api import HttpTarget, JobSpec


@dataclass(frozen=True)
class Violation:
    field: str
    message: str


def target_bytes(spec: JobSpec) -> int:
    """The target as it is copied into Redis and every run request: URL, headers, body."""
    return len(orjson.dumps(spec.target.model_dump(mode="json")))


def _retry_violations(spec: JobSpec, limits: JobLimitSettings) -> list[Violation]:
    retry, out = spec.retry, []
    if retry.max_attempts > limits.max_retry_attempts:
        out.append(Violation("retry.max_attempts",
                             f"must be at most {limits.max_retry_attempts}"))
    if retry.max_attempts > 1:  # the backoff only matters to a job that retries
        least = limits.min_retry_delay_seconds
        for name in ("initial_delay_seconds", "max_delay_seconds"):
            if getattr(retry, name) < least:
                out.append(Violation(f"retry.{name}",
                                     f"must be at least {least:g} seconds when the job retries"))
    return out


def violations(spec: JobSpec, limits: JobLimitSettings) -> list[Violation]:
    """Every limit `spec` exceeds, each naming its field."""
    out = []
    target = spec.target
    if isinstance(target, HttpTarget) and target.timeout_seconds > limits.max_timeout_seconds:
        out.append(Violation("target.timeout_seconds",
                             f"must be at most {limits.max_timeout_seconds:g} seconds"))
    out.extend(_retry_violations(spec, limits))
    size = target_bytes(spec)
    if size > limits.quota_payload_bytes:
        out.append(Violation("target", f"is {size} bytes serialized (URL, headers and body; "
                                       "a command's argv, env, stdin and files); "
                                       f"the quota is {limits.quota_payload_bytes} bytes per job"))
    return out
