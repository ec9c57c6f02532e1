"""How long one batch of alert notifications can take, and the alerts consumer's poll limit
that follows from it (executor.notifications.NotifierSettings)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from duetime import kafka
from duetime.lifecycle import Lifecycle
from duetime.settings import KafkaSettings
from executor import notifications
from executor.egress import EgressPolicy
from executor.notifications import NotifierSettings
from executor.offsets import OffsetTracker
from executor.service import Settings as executor_settings
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


def _alert(tenant: str, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps({"tenant": tenant, "alert_id": f"al_{offset}"})
    return ConsumerRecord("alerts", 0, offset, 0, 0, None, value, None, len(value), -1, [])


async def test_a_tenant_at_its_cap_waits_aside_and_a_revoked_alert_is_not_delivered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ADR 0061: past its cap a tenant's alerts wait aside, holding no slot; a delivery that
    ends hands its place to the next one aside — unless that one's partition was revoked
    meanwhile (its new owner delivers it from the committed offset)."""
    gates: dict[int, asyncio.Event] = {}

    async def handle(self: Any, msg: ConsumerRecord[bytes, bytes]) -> None:
        await gates.setdefault(msg.offset, asyncio.Event()).wait()

    monkeypatch.setattr(notifications.Notifier, "handle", handle)
    limits = NotifierSettings(notify_concurrency=4, notify_tenant_max_in_flight=0.25,
                              notify_max_waiting=3)
    notifier = notifications.Notifier(None, EgressPolicy(), SigningKeys(), limits)  # type: ignore[arg-type]
    tracker = OffsetTracker()
    intake = notifications._Intake(Lifecycle("executor"), notifier, tracker)
    tp = TopicPartition("alerts", 0)
    await intake.take(tp, [_alert("a", 0), _alert("a", 1), _alert("a", 2), _alert("b", 3)])
    await asyncio.sleep(0)
    assert sorted(gates) == [0, 3]  # one of a's (its cap), and b's beside it
    assert intake.room() == 1  # 2 slots free, but 2 of 3 places aside taken

    gates[0].set()  # a's first ends: its place goes to a's next
    await _until(lambda: 1 in gates)
    assert intake.share.waiting_count() == 1

    tracker.forget({tp})  # revoked: what waits aside is the new owner's
    gates[1].set()
    await _until(lambda: intake.share.waiting_count() == 0)
    await asyncio.sleep(0.01)
    assert 2 not in gates and intake.share.running == {"b": 1}
    gates[3].set()
    await _until(lambda: not intake.deliveries)
    assert intake.share.running == {}


async def _until(check: Any) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


def test_the_executors_settings_give_the_notifier_its_own_tenant_cap() -> None:
    """The executor's settings hold the notifier's beside its own: the runs' cap (a share of
    max_in_flight) must not stand in for the alerts' (a share of notify_concurrency)."""
    settings = executor_settings(max_in_flight=1000, notify_concurrency=32)
    assert settings.tenant_cap == 250
    assert settings.notify_tenant_cap == 8
    intake = notifications._Intake(Lifecycle("executor"), notifications.Notifier(
        None, EgressPolicy(), SigningKeys(), settings), OffsetTracker())  # type: ignore[arg-type]
    assert intake.share.cap == 8


@pytest.mark.parametrize("value", [b"", b"\xff\xfe not utf-8", b"not json", b"[1, 2]", b"null",
                                   b'{"tenant": 5}', b'{"tenant": null}', b'{"tenant": "a"' * 1000])
async def test_an_unreadable_alert_is_taken_under_the_unknown_tenant_never_raising(
        monkeypatch: pytest.MonkeyPatch, value: bytes) -> None:
    """Hostile or malformed alerts reach the intake before they are parsed: each is read as
    tenant "" and started (its handler counts and skips it), and the consumer goes on."""
    handled: list[bytes] = []

    async def handle(self: Any, msg: ConsumerRecord[bytes, bytes]) -> None:
        handled.append(msg.value or b"")

    monkeypatch.setattr(notifications.Notifier, "handle", handle)
    notifier = notifications.Notifier(None, EgressPolicy(), SigningKeys(), NotifierSettings())  # type: ignore[arg-type]
    intake = notifications._Intake(Lifecycle("executor"), notifier, OffsetTracker())
    record = ConsumerRecord("alerts", 0, 7, 0, 0, None, value, None, len(value), -1, [])
    await intake.take(TopicPartition("alerts", 0), [record, _alert("a", 8)])
    await _until(lambda: not intake.deliveries)
    assert handled == [value, orjson.dumps({"tenant": "a", "alert_id": "al_8"})]
    assert intake.share.running == {} and intake.share.waiting_count() == 0
