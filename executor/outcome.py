"""How a finished attempt is judged, and when the next attempt is due (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from schemas.api import RetryPolicy, storable_text


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | failed | timed_out | cancelled
    http_status: int | None = None
    error: str | None = None
    excerpt: str | None = None
    reason: str | None = None
    # False for a refusal that another attempt would meet again (a policy, an authorization):
    # the run fails at once instead of retrying into the same wall.
    retryable: bool = True

    def __post_init__(self) -> None:
        # Whatever a target answered or an error said, the status must be storable: a NUL
        # (binary answers, protobuf, images) becomes U+FFFD instead of blocking the run.
        for name in ("error", "excerpt", "reason"):
            text = getattr(self, name)
            if text is not None:
                object.__setattr__(self, name, storable_text(text))


def is_success(status: int, success_codes: list[int] | None) -> bool:
    return status in success_codes if success_codes else 200 <= status < 300


def backoff_seconds(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Delay before attempt `attempt + 1`: exponential, capped, with full jitter if asked."""
    delay = min(policy.max_delay_seconds,
                policy.initial_delay_seconds * policy.multiplier ** (attempt - 1))
    if policy.jitter:
        delay = (rng or random).uniform(delay / 2, delay)
    return delay


def should_retry(outcome: Outcome, attempt: int, policy: RetryPolicy) -> bool:
    return outcome.retryable and outcome.status in ("failed", "timed_out") \
        and attempt < policy.max_attempts
