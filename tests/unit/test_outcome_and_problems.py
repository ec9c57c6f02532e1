from __future__ import annotations

import random

from duetime.merge_patch import merge_patch
from duetime.problems import field_path
from executor.outcome import Outcome, backoff_seconds, is_success, should_retry
from schemas.api import RetryPolicy


def test_backoff_is_exponential_capped_and_jittered_below_the_cap() -> None:
    p = RetryPolicy(initial_delay_seconds=1, multiplier=2, max_delay_seconds=5, jitter=False)
    assert [backoff_seconds(p, a) for a in (1, 2, 3, 4)] == [1, 2, 4, 5]
    j = RetryPolicy(initial_delay_seconds=4, multiplier=2, max_delay_seconds=100, jitter=True)
    rng = random.Random(1)
    assert all(2 <= backoff_seconds(j, 1, rng) <= 4 for _ in range(100))


def test_retry_only_failures_with_attempts_left() -> None:
    p = RetryPolicy(max_attempts=2)
    assert should_retry(Outcome("failed"), 1, p)
    assert should_retry(Outcome("timed_out"), 1, p)
    assert not should_retry(Outcome("failed"), 2, p)
    assert not should_retry(Outcome("succeeded"), 1, p)


def test_success_codes() -> None:
    assert is_success(204, None) and not is_success(302, None)
    assert is_success(302, [302]) and not is_success(200, [302])


def test_field_paths_hide_union_tags() -> None:
    assert field_path(("body", "schedule", "cron", "expression")) == "schedule.expression"
    assert field_path(("body", "target", "http", "url")) == "target.url"
    assert field_path(("body",)) == "body"
    assert field_path(("query", "limit")) == "limit"


def test_merge_patch_rfc7396() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": 5}) == \
        {"a": 1, "b": {"d": 3, "e": 4}, "f": 5}
    assert merge_patch({"a": 1}, ["x"]) == ["x"]
