"""How long one batch of alert notifications can take, and the alerts consumer's poll limit
that follows from it (executor.notifications.NotifierSettings)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from duetime import kafka
from duetime.lifecycle import Lifecycle
from duetime.settings import KafkaSettings
from executor import notifications
from executor.egress import EgressPolicy
from executor.notifications import NotifierSettings
from executor.signing import SigningKeys
from schemas.api import NOTIFY_TIMEOUT_MAX_SECONDS


def test_a_batch_lasts_its_slowest_delivery_with_every_retry() -> None:
    s = NotifierSettings(notify_attempts=3, notify_retry_seconds=1.0)
    # Three attempts into the longest timeout, sleeping 1 s and 2 s between them.
    assert s.longest_batch_seconds == 3 * NOTIFY_TIMEOUT_MAX_SECONDS + 1 + 2


@pytest.mark.parametrize(("attempts", "retry", "poll_ms"), [
    (3, 1.0, 300_000),  # the defaults: 183 s, within Kafka clients' usual 5 minutes
    (1, 0.0, 300_000),  # never below it
    (5, 10.0, (5 * 60 + 10 * (1 + 2 + 4 + 8) + 60) * 1000),  # past it: raised
])
def test_the_poll_limit_outlasts_the_longest_batch(attempts: int, retry: float,
                                                    poll_ms: int) -> None:
    s = NotifierSettings(notify_attempts=attempts, notify_retry_seconds=retry)
    assert s.max_poll_interval_ms == poll_ms
    assert s.max_poll_interval_ms > s.longest_batch_seconds * 1000


class _Consumer:
    """Stands in for the alerts consumer: records what it is asked for, then stops."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.asked: list[int] = []

    def assignment(self) -> set[Any]:
        return set()

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        self.asked.append(max_records)
        self.lifecycle.stop.set()
        return {}


async def test_the_consumer_fetches_a_slot_per_alert_and_outlasts_a_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lifecycle = Lifecycle("executor")
    fake = _Consumer(lifecycle)
    opened: dict[str, Any] = {}

    @asynccontextmanager
    async def consumer(*args: Any, **overrides: Any) -> AsyncIterator[_Consumer]:
        opened.update(overrides)
        yield fake

    monkeypatch.setattr(kafka, "consumer", consumer)
    limits = NotifierSettings(notify_concurrency=7, notify_attempts=5, notify_retry_seconds=10)
    notifier = notifications.Notifier(None, EgressPolicy(), SigningKeys(), limits)  # type: ignore[arg-type]
    await notifications.consume(lifecycle, notifier, KafkaSettings(), "test")
    assert fake.asked == [7]
    assert opened["max_poll_interval_ms"] == limits.max_poll_interval_ms > 300_000
