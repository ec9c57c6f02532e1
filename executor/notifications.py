"""Delivers alerts to the webhooks jobs name for them (on_failure, on_late, on_recovered; ADR 0033).

A consumer of `duetime.alerts` in a group of its own, beside the executor's run consumer in the
same process but sharing nothing with the firing path: its own HTTP client and connection pool
(so a slow alert receiver never holds a connection a run needs), its own tasks and offsets.
What it shares is policy: the egress rules (executor.egress) and the tenant's signing keys
(executor.signing). Delivery is at least once: a partition's offset is committed up to its
oldest alert not yet delivered or given up on; each call is retried a few times, and the alert id is the
`Idempotency-Key` and `webhook-id`, so a receiver drops a repeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import Counter, Gauge
from pydantic import Field, ValidationError
from yarl import URL

from duetime import kafka
from duetime.consumer_readiness import caught_up
from duetime.lifecycle import Lifecycle
from duetime.settings import KafkaSettings, _Fragment
from executor.egress import (
    RESOLVING_FOR,
    EgressBlocked,
    EgressPolicy,
    blocked_reason,
    client_session,
)
from executor.fair_share import TenantShare, tenant_of
from executor.offsets import CommitOnRevoke, OffsetTracker, commit_done
from executor.signing import SigningKeys
from executor.targets import call_error
from schemas.api import NOTIFY_TIMEOUT_MAX_SECONDS, NotificationTarget, is_denied_http_header
from schemas.events import AlertRaised
from schemas.topics import ALERTS

log = logging.getLogger(__name__)
DELIVERIES = Counter("duetime_executor_notifications_total",
                     "Alert notifications, by how their delivery ended", ["kind", "outcome"])
WAITING = Gauge("duetime_executor_notifications_waiting_for_tenant_cap",
                "Alerts set aside because their tenant's deliveries are at its cap")
GROUP = "duetime-notifier"


class NotifierSettings(_Fragment):
    notify_attempts: int = Field(default=3, ge=1, le=10)
    notify_retry_seconds: float = Field(default=1.0, ge=0, le=60)
    notify_concurrency: int = Field(default=32, ge=1, le=1000)
    notify_connections: int = Field(default=32, ge=1)
    # One tenant's deliveries take at most this fraction of notify_concurrency (at least one);
    # its other alerts wait aside holding no slot, at most notify_max_waiting of them in all,
    # so receivers of one tenant that never answer cannot hold back every other tenant's alerts.
    notify_tenant_max_in_flight: float = Field(default=0.25, gt=0, le=1)
    notify_max_waiting: int = Field(default=10_000, ge=1)
    # At most one notification of a kind per job this often (0: every alert); see Quieting.
    notify_min_interval_seconds: float = Field(default=60.0, ge=0, le=86_400)
    # How long the alerts consumer lets the broker hold an empty fetch. An alert is news about
    # a run that already happened, so half a second is no one's loss; at the firing path's
    # 20 ms this mostly idle consumer cost the broker ~50 empty fetches a second.
    notify_fetch_max_wait_ms: int = Field(default=500, ge=0, le=500)

    @property
    def notify_tenant_cap(self) -> int:
        # Named apart from the executor's own `tenant_cap` (for runs): the executor's settings
        # class holds both.
        return max(1, int(self.notify_concurrency * self.notify_tenant_max_in_flight))

    @property
    def longest_batch_seconds(self) -> float:
        """How long one fetched batch of alerts can take to deliver. A batch holds at most
        notify_concurrency alerts, so none waits for a slot: the batch lasts as long as its
        slowest delivery, every attempt running into the longest timeout a webhook may set,
        with the back-off between attempts."""
        backoff = self.notify_retry_seconds * ((1 << (self.notify_attempts - 1)) - 1)
        return self.notify_attempts * NOTIFY_TIMEOUT_MAX_SECONDS + backoff

    @property
    def max_poll_interval_ms(self) -> int:
        """The alerts consumer's poll interval limit: past a batch's longest delivery (with a
        minute to spare for the commit), never below Kafka clients' usual 5 minutes. A batch
        that outlasted it would make the consumer leave its group, fail its commit and be
        fetched again — and again (before 2026-11-27 a batch was up to 200 alerts for 32
        slots: to webhooks that never answer, ~6 minutes by this arithmetic; not observed)."""
        return max(300_000, int((self.longest_batch_seconds + 60) * 1000))


# Never held back: the end of a streak is the news the receiver waits for.
ALWAYS_SENT = frozenset({"recovered"})


class Quieting:
    """A job failing every second must not page someone every second: at most one notification
    per (job, kind) every `interval_s` of alert time, and the next one sent says how many were
    held back since the last (`detail.suppressed`). Every alert is still listed (GET /alerts).

    In memory, per notifier: alerts are keyed by job id, so one notifier sees all of a job's
    (after a rebalance or a restart a new owner may send one more). A count held back with no
    later alert of its kind is never sent; the listing has them.
    """

    MAX_TRACKED = 100_000

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last: dict[tuple[str, str | None, str], tuple[float, int]] = {}

    def admit(self, alert: AlertRaised) -> AlertRaised | None:
        """The alert to send (with `suppressed` when some were held back), or None."""
        if self.interval_s <= 0 or alert.kind in ALWAYS_SENT:
            return alert
        key, at = (alert.tenant, alert.job_id, alert.kind), alert.at.timestamp()
        sent_at, held = self.last.get(key, (float("-inf"), 0))
        if at - sent_at < self.interval_s:
            self.last[key] = (sent_at, held + 1)
            return None
        if len(self.last) >= self.MAX_TRACKED:
            self._forget(at)
        self.last[key] = (at, 0)
        if not held:
            return alert
        return alert.model_copy(update={"detail": {**alert.detail, "suppressed": held}})

    def _forget(self, now: float) -> None:
        """Drop keys whose window has passed (their held-back counts with them)."""
        self.last = {k: v for k, v in self.last.items() if now - v[0] < self.interval_s}


def payload(alert: AlertRaised) -> bytes:
    """What the receiver gets: the alert, without where it is sent."""
    return orjson.dumps(alert.model_dump(mode="json", exclude={"webhook", "schema_version"}))


def request_headers(alert: AlertRaised, webhook: NotificationTarget, body: bytes,
                    signing: SigningKeys) -> dict[str, str]:
    # A job stored before a header was refused never sends it (as targets.without_denied_headers).
    headers = {k: v for k, v in webhook.headers.items() if not is_denied_http_header(k)}
    headers.update({"Content-Type": "application/json", "Idempotency-Key": alert.alert_id,
                    "X-Duetime-Alert-Id": alert.alert_id, "X-Duetime-Alert-Kind": alert.kind,
                    "X-Duetime-Job-Id": alert.job_id or ""})
    return signing.signed(alert.tenant, alert.alert_id, body, headers)


class Notifier:
    def __init__(self, session: aiohttp.ClientSession, egress: EgressPolicy,
                 signing: SigningKeys, settings: NotifierSettings) -> None:
        self.session, self.egress, self.signing, self.settings = session, egress, signing, settings
        self.slots = asyncio.Semaphore(settings.notify_concurrency)
        self.quieting = Quieting(settings.notify_min_interval_seconds)

    async def call(self, alert: AlertRaised, webhook: NotificationTarget) -> str | None:
        """One delivery attempt: None when the receiver answered 2xx, else why not."""
        body = payload(alert)
        RESOLVING_FOR.set(alert.tenant)  # this delivery's task: its lookups are the tenant's
        try:
            self.egress.check_url(webhook.url)
            async with self.session.request(
                    webhook.method, webhook.url, data=body, allow_redirects=False,
                    headers=request_headers(alert, webhook, body, self.signing),
                    timeout=aiohttp.ClientTimeout(total=webhook.timeout_seconds)) as resp:
                return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
        except TimeoutError:
            return f"no response within {webhook.timeout_seconds:g}s"
        except Exception as exc:  # one receiver's failure is that delivery's, never the consumer's
            blocked = blocked_reason(exc)
            if blocked is not None:
                raise EgressBlocked(blocked) from None
            return call_error(exc)

    async def deliver(self, alert: AlertRaised) -> str:
        """Deliver with retries; the outcome (delivered, failed, blocked, no_webhook)."""
        webhook = alert.webhook
        if webhook is None:
            return "no_webhook"
        where = {"alert_id": alert.alert_id, "job_id": alert.job_id, "kind": alert.kind,
                 "host": URL(webhook.url).host}
        for attempt in range(1, self.settings.notify_attempts + 1):
            try:
                async with self.slots:
                    error = await self.call(alert, webhook)
            except EgressBlocked as exc:
                log.info("alert notification blocked", extra={**where, "error": str(exc)})
                return "blocked"  # never retried, as a blocked run is not
            if error is None:
                return "delivered"
            log.info("alert notification failed",
                     extra={**where, "attempt": attempt, "error": error})
            if attempt < self.settings.notify_attempts:
                await asyncio.sleep(self.settings.notify_retry_seconds * 2 ** (attempt - 1))
        return "failed"

    async def handle(self, msg: ConsumerRecord[bytes, bytes]) -> None:
        try:
            alert = AlertRaised.model_validate_json(msg.value or b"")
        except ValidationError as exc:
            # Only the writer writes this topic: a message that does not parse is a bug or a
            # newer schema; it is skipped (and counted) rather than blocking the partition.
            DELIVERIES.labels("unknown", "invalid").inc()
            log.warning("invalid alert message skipped",
                        extra={"offset": msg.offset, "error": str(exc)[:300]})
            return
        # Decided before the first await: a batch is admitted in its order.
        admitted = self.quieting.admit(alert)
        if admitted is None:
            DELIVERIES.labels(alert.kind, "suppressed").inc()
            return
        DELIVERIES.labels(alert.kind, await self.deliver(admitted)).inc()


class _Intake:
    """The alerts fetched and not yet done: deliveries under way, at most notify_concurrency
    of them and at most the tenant's cap for one tenant, and the alerts set aside until a
    delivery of their tenant ends (ADR 0061)."""

    def __init__(self, lifecycle: Lifecycle, notifier: Notifier, tracker: OffsetTracker) -> None:
        self.lifecycle, self.notifier, self.tracker = lifecycle, notifier, tracker
        self.limits = notifier.settings
        self.share: TenantShare[tuple[TopicPartition, int, ConsumerRecord[bytes, bytes]]] = (
            TenantShare(self.limits.notify_tenant_cap, self.limits.notify_max_waiting))
        self.deliveries: set[asyncio.Task[None]] = set()

    def room(self) -> int:
        """How many alerts may be fetched now: each is started or set aside at once."""
        return min(self.limits.notify_concurrency - len(self.deliveries),
                   self.limits.notify_max_waiting - self.share.waiting_count())

    async def wait_for_room(self) -> None:
        if self.deliveries:
            await asyncio.wait(self.deliveries, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(0.2)

    async def take(self, tp: TopicPartition, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        generation = self.tracker.generation(tp)
        for msg in messages:  # started in order: Quieting admits in that order
            self.tracker.started(tp, msg.offset)
            tenant = tenant_of(msg)
            # Never waits: room() left a place aside for every alert fetched.
            if self.share.admit(tenant) or not await self.share.wait_aside(
                    tenant, (tp, generation, msg)):
                self.spawn(tp, generation, msg, tenant)
        WAITING.set(self.share.waiting_count())

    def spawn(self, tp: TopicPartition, generation: int, msg: ConsumerRecord[bytes, bytes],
              tenant: str) -> None:
        task = asyncio.create_task(_handle(self.notifier, self.tracker, tp, generation, msg))
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)
        task.add_done_callback(lambda _: self.hand_on(tenant))

    def hand_on(self, tenant: str) -> None:
        """A delivery of `tenant` ended: its place goes to the tenant's next alert aside whose
        partition is still ours (a revoked one is its new owner's, from the committed offset).
        A stop starts nothing new: alerts still aside are left uncommitted."""
        if self.lifecycle.stop.is_set():
            self.share.leave(tenant)
            return
        while (aside := self.share.handover(tenant)) is not None:
            tp, generation, msg = aside
            if generation == self.tracker.generation(tp):
                self.spawn(tp, generation, msg, tenant)
                break
        WAITING.set(self.share.waiting_count())


async def consume(lifecycle: Lifecycle, notifier: Notifier, settings: KafkaSettings,
                  client_id: str, topic: str = ALERTS, group: str = GROUP,
                  fetch_max_wait_ms: int = 500) -> None:
    """Deliver each alert in its own task as it is fetched (`_Intake`), and commit each
    partition up to its oldest alert still being delivered or set aside: a receiver that is
    slow to answer holds back its own alert, not the ones fetched after it (before 2026-11-27
    a whole batch waited for its slowest delivery, up to ~3 minutes), and a tenant whose
    receivers all hang holds back only its own alerts. A stop lets the deliveries under way
    end."""
    tracker = OffsetTracker()
    intake = _Intake(lifecycle, notifier, tracker)
    opened: list[AIOKafkaConsumer] = []  # the consumer once open: the listener commits with it

    async def commit(partitions: set[TopicPartition] | None = None) -> None:
        await commit_done(opened[0] if opened else None, tracker, partitions)

    async with kafka.consumer(settings, group, f"{client_id}-notifier", topic,
                              fetch_max_wait_ms=fetch_max_wait_ms,
                              max_poll_interval_ms=notifier.settings.max_poll_interval_ms,
                              listener=CommitOnRevoke(tracker, commit)) as consumer:
        opened.append(consumer)
        lifecycle.checks["notifier_caught_up"] = caught_up(consumer, settings.kafka_ready_max_lag)
        while not lifecycle.stop.is_set():
            room = intake.room()
            if room <= 0:  # every slot busy, or the room aside full: fetch when one frees
                await intake.wait_for_room()
            else:
                batches = await consumer.getmany(timeout_ms=200, max_records=room)
                for tp, messages in batches.items():
                    await intake.take(tp, messages)
            await commit()
        if intake.deliveries:
            await asyncio.wait(intake.deliveries)
        await commit()


async def _handle(notifier: Notifier, tracker: OffsetTracker, tp: TopicPartition,
                  generation: int, msg: ConsumerRecord[bytes, bytes]) -> None:
    try:
        await notifier.handle(msg)
    finally:
        tracker.finished(tp, msg.offset, generation)


def workers(lifecycle: Lifecycle, settings: Any, signing: SigningKeys,
            client_id: str) -> dict[str, Coroutine[Any, Any, None]]:
    """The notifier's supervised task for the executor's `main` (`settings`: the executor's,
    which include NotifierSettings, KafkaSettings and `egress_allow`)."""
    return {"notify": run(lifecycle, settings, signing, client_id)}


async def run(lifecycle: Lifecycle, settings: Any, signing: SigningKeys, client_id: str) -> None:
    egress = EgressPolicy.parse(settings.egress_allow)
    session = client_session(egress, settings.notify_connections, settings.notify_connections)
    async with session:
        await consume(lifecycle, Notifier(session, egress, signing, settings), settings, client_id,
                      fetch_max_wait_ms=settings.notify_fetch_max_wait_ms)
