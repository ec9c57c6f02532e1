"""The executor: claims each run, fires it at its due instant, reports every status.

Offsets are committed only below the lowest run still in flight, after that run's final
status was acknowledged by Kafka. A run is claimed (leased in Redis) before it starts; the
lease is renewed while it runs, so a redelivery during a rebalance does not run it twice and
a run whose executor died is requeued once its lease expires.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram
from pydantic import Field, ValidationError
from redis.exceptions import RedisError

from duetime import kafka, postgres
from duetime.attempts import (
    NOT_FIRED,
    NOT_STARTED,
    TRANSIENT,
    Leases,
    lost_lease,
    sleep_until,
    start_when_due,
    until_done,
)
from duetime.clock import ReferenceClock
from duetime.consumer_readiness import caught_up
from duetime.due_set import Claim, DueSet, Entry, Start
from duetime.kafka_targets import TopicPolicy
from duetime.lifecycle import Lifecycle
from duetime.ops import ops_app, serve
from duetime.redis_client import redis_client
from duetime.settings import (
    HttpSettings,
    JobLimitSettings,
    KafkaSettings,
    KafkaTargetSettings,
    PostgresSettings,
    RedeliverySettings,
    RedisSettings,
)
from duetime.timeutil import from_ms, to_ms, utcnow
from executor import notifications
from executor.egress import (
    RESOLVER_THREADS,
    EgressPolicy,
    EgressSettings,
    client_session,
    resolver_of,
)
from executor.fair_share import ConnectionSlots, TenantShare, tenant_of
from executor.notifications import NotifierSettings
from executor.offsets import CommitOnRevoke, OffsetTracker, commit_done
from executor.outcome import Outcome, backoff_seconds, should_retry
from executor.signing import SigningKeys, first_load, keep_loaded
from executor.targets import (
    HttpCalls,
    cut_excerpt,
    fire_http,
    fire_kafka,
    without_denied_headers,
)
from schemas.api import HttpTarget
from schemas.event_json import holds_free_text, status_json
from schemas.events import DeadLetter, RunRequested, RunStatusChanged
from schemas.redaction import scrub_echo
from schemas.topics import RUNS, RUNS_DLQ, RUNS_STATUS

# Before the event loop's thread pool starts: name lookups wait for its threads (egress.py).
os.environ.setdefault("UV_THREADPOOL_SIZE", str(RESOLVER_THREADS))

log = logging.getLogger(__name__)
FINISHED = Counter("duetime_executor_runs_total", "Attempts finished", ["status"])
SKIPPED = Counter("duetime_executor_claims_refused_total", "Run requests not run", ["reason"])
LATENESS = Histogram("duetime_executor_lateness_seconds", "Start time minus due time",
                     buckets=(0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1,
                              5, 30))
IN_FLIGHT = Gauge("duetime_executor_in_flight", "Attempts running now")
WAITING = Gauge("duetime_executor_waiting_for_tenant_cap",
                "Run requests set aside because their tenant is at its in-flight cap")
CONNECTION_WAIT = Gauge("duetime_executor_calls_waiting_for_connection",
                        "HTTP calls waiting for a connection slot: their host (an address) is "
                        "at DUETIME_HTTP_CONNECTIONS_PER_HOST or every connection is in use")
WRITE_RETRIES = Counter("duetime_executor_write_retries_total",
                        "Writes recording a call that failed and were retried", ["write"])
RUNNING_NOT_SENT = Counter("duetime_executor_running_status_not_sent_total",
                           "Running statuses Kafka did not take (the final status follows)")


class Settings(KafkaSettings, KafkaTargetSettings, RedisSettings, RedeliverySettings, HttpSettings,
               PostgresSettings, JobLimitSettings, NotifierSettings, EgressSettings):
    http_port: int = 18106
    # Postgres is read for the signing secrets only, off the firing path (executor.signing).
    postgres_pool_min: int = 0  # no connection at start: Postgres may come up after us
    postgres_pool_max: int = 2
    signing_refresh_seconds: float = Field(default=2.0, gt=0, le=60)
    # The principal Kafka targets are published as: it may write tenant topics only (ADR
    # 0015), never duetime's own, so a target cannot forge commands or statuses. Unset: this
    # executor fails Kafka targets instead of publishing them with its own credentials.
    kafka_target_username: str | None = None
    kafka_target_password: str | None = Field(default=None, repr=False)
    # Run requests arrive ~300 ms before they are due (the dispatcher's lookahead), so a
    # longer fetch wait costs no lateness and spares the broker hundreds of empty fetches/s.
    # New records end the wait at once; it bounds only a record on a partition left out of
    # the fetch in flight. 50, not 20: an idle executor and Kafka used a third less CPU, and
    # at 200 firings/s (rounds 40 ms apart) fewer fetches came back empty (ADR 0049).
    kafka_fetch_max_wait_ms: int = 50
    # This producer sends statuses (records, after the call): attempts that end within a few ms
    # share a request. Kafka targets go through their own producer, which never waits.
    kafka_linger_ms: int = Field(default=5, ge=0, le=100)
    max_in_flight: int = Field(default=1000, ge=1)
    lease_ms: int = Field(default=10_000, ge=500)
    http_connections: int = Field(default=512, ge=1)
    http_connections_per_host: int = Field(default=64, ge=1)
    # A tenant may hold at most this fraction of max_in_flight (at least one run); its runs
    # past that wait aside, holding no slot, and at most tenant_max_waiting runs wait in all.
    tenant_max_in_flight: float = Field(default=0.25, gt=0, le=1)
    tenant_max_waiting: int = Field(default=10_000, ge=1)
    executor_id: str = ""
    # A call still going after this long is reported `running`; one that ends sooner goes
    # from `queued` straight to its final status, which carries started_at and lateness_ms
    # (ADR 0024). 0 reports every call as running.
    running_status_after_ms: int = Field(default=250, ge=0, le=60_000)

    @property
    def tenant_cap(self) -> int:
        return max(1, int(self.max_in_flight * self.tenant_max_in_flight))


@dataclass(frozen=True)
class Topics:
    """The topics the executor reads and writes (tests run it on topics of their own)."""

    runs: str = RUNS
    status: str = RUNS_STATUS
    dlq: str = RUNS_DLQ


class Executor:
    def __init__(self, due_set: DueSet, producer: AIOKafkaProducer,
                 session: aiohttp.ClientSession, settings: Settings,
                 topics: Topics | None = None, clock: ReferenceClock | None = None,
                 signing: SigningKeys | None = None, target_producer: Any = None) -> None:
        self.due_set, self.producer, self.session = due_set, producer, session
        self.http = HttpCalls(session, EgressPolicy.parse(settings.egress_allow),
                              ConnectionSlots(settings.http_connections,
                                              settings.http_connections_per_host,
                                              CONNECTION_WAIT.set),
                              settings.max_timeout_seconds, resolver_of(session))
        self.signing = signing or SigningKeys()
        self.target_producer = target_producer
        self.target_topics = TopicPolicy(settings)
        # "Due" and leases are judged by the due-set's Redis clock, not this machine's (ADR 0012).
        self.clock = clock or ReferenceClock(due_set.server_time_ms)
        self.settings = settings
        self.topics = topics or Topics()
        self.id = settings.executor_id or f"{socket.gethostname()}-{os.getpid()}"
        self.leases = Leases(due_set, self.clock, self.id, settings.lease_ms)
        self.calls: dict[str, tuple[asyncio.Task[Any], RunRequested]] = {}
        self.aborted: dict[str, str] = {}

    def status_event(self, req: RunRequested, status: str, **fields: Any) -> bytes:
        values = dict(run_id=req.run_id, job_id=req.job_id, tenant=req.tenant,
                      scheduled_at=req.scheduled_at, attempt=req.attempt, status=status,
                      at=utcnow(), executor_id=self.id, **fields)
        if holds_free_text(values):  # errors, excerpts, reasons: the model cleans and bounds them
            return kafka.encode(RunStatusChanged(**values))
        return status_json(**values)  # the same bytes, without a model per firing (ADR 0024)

    async def send_status(self, req: RunRequested, event: bytes) -> None:
        await self.producer.send_and_wait(self.topics.status, event, key=req.job_id.encode())

    async def claim(self, msg: ConsumerRecord[bytes, bytes]) -> tuple[RunRequested, Entry] | None:
        """Parse and claim a run request; None when it is not ours to run. Safe to retry."""
        try:
            req = RunRequested.model_validate_json(msg.value or b"")
            entry = Entry.parse(req.member)
        except (ValidationError, ValueError) as exc:
            SKIPPED.labels("invalid").inc()
            letter = DeadLetter(source_topic=msg.topic, partition=msg.partition,
                                offset=msg.offset, key=(msg.key or b"").decode(errors="replace"),
                                value=(msg.value or b"").decode(errors="replace"),
                                reason=f"invalid run request: {exc}"[:2000], at=utcnow())
            await self.producer.send_and_wait(self.topics.dlq, kafka.encode(letter), key=msg.key)
            return None
        verdict = await self.due_set.claim(entry, req.member, self.id, await self.clock.now_ms(),
                                           self.settings.lease_ms)
        if verdict != Claim.OK:
            SKIPPED.labels(verdict).inc()
            log.info("run not claimed", extra={"run_id": req.run_id, "job_id": req.job_id,
                                               "attempt": req.attempt, "reason": verdict})
            return None
        return req, entry

    async def poison(self, msg: ConsumerRecord[bytes, bytes], entry: Entry | None,
                     reason: str) -> None:
        """A request that breaks the executor: dead-letter it and end its attempt, so neither
        the partition's offsets nor the lease sweep keep tripping over it (ADR 0007)."""
        log.exception("poison run request", extra={"offset": msg.offset, "reason": reason[:300]})
        if entry is not None:
            await self.due_set.complete(entry, None, 0)
        letter = DeadLetter(source_topic=msg.topic, partition=msg.partition, offset=msg.offset,
                            key=(msg.key or b"").decode(errors="replace"),
                            value=(msg.value or b"").decode(errors="replace"),
                            reason=reason[:2000], at=utcnow())
        await self.producer.send_and_wait(self.topics.dlq, kafka.encode(letter), key=msg.key)

    async def execute(self, req: RunRequested, entry: Entry, raw: bytes) -> None:
        """Run a claimed attempt; its lease is renewed until this returns.

        A failure before the call lets the lease lapse: the attempt is requeued, nothing fired.
        After the call only the writes that record it are retried (`until_done`), never the call.
        """
        self.leases.hold(entry)
        try:
            await self.run(req, entry, raw)
        finally:
            self.leases.release(entry)

    async def run(self, req: RunRequested, entry: Entry, raw: bytes) -> None:
        verdict = await start_when_due(self.due_set, self.clock, entry, to_ms(req.due_at),
                                       req.overlap, self.id, req.member)
        if verdict.kind is Start.LOST:
            lost_lease(req.run_id, req.job_id, req.attempt)
            SKIPPED.labels(verdict.kind).inc()
            return
        if verdict.kind in NOT_FIRED:
            await self.not_fired(req, verdict.kind)
            return
        if verdict.kind in NOT_STARTED:
            status, error, reason = NOT_STARTED[verdict.kind]
            await self.finish(req, entry, Outcome(status, error=error, reason=reason), None, None)
            return
        started = from_ms(await self.clock.now_ms())
        lateness = max(0, to_ms(started) - to_ms(req.due_at))
        LATENESS.observe(lateness / 1000)
        # "running" is reported only for a call still going after running_status_after_ms:
        # a fast call's final status says all of it (started_at, lateness_ms) one message
        # cheaper (ADR 0024). A timer, not a task, so a fast call costs no task at all.
        running: list[asyncio.Task[None]] = []
        timer = asyncio.get_running_loop().call_later(
            self.settings.running_status_after_ms / 1000,
            lambda: running.append(asyncio.create_task(self.report_running(req, started, lateness))))
        try:
            outcome = await self.fire(req, entry)
            timer.cancel()
            if running:
                await running[0]  # "running" goes ahead of the final status on the partition
        finally:
            timer.cancel()
            for task in running:
                task.cancel()  # only if the attempt itself was cancelled (a drain's deadline)
        final = await self.finish(req, entry, outcome, started, lateness)
        if final and outcome.status in ("failed", "timed_out"):
            letter = DeadLetter(source_topic=self.topics.runs, partition=-1, offset=-1,
                                key=req.job_id, value=raw.decode(errors="replace"),
                                reason=f"{outcome.status} after {req.attempt} attempt(s): "
                                       f"{outcome.error}"[:2000], at=utcnow())
            await self.until_done("dead_letter", req, lambda: self.producer.send_and_wait(
                self.topics.dlq, kafka.encode(letter), key=req.job_id.encode()))

    async def report_running(self, req: RunRequested, started: datetime, lateness: int) -> None:
        """Send the "running" status of a call that outlasts running_status_after_ms: best
        effort, never retried.

        It is sent while the call is under way, so neither retrying nor failing could fire
        anything twice; but retrying would hold the final status back, and failing would leave
        the attempt to the lease sweep (at least `lease_ms` late) for a status that is only
        informative: the final status carries `started_at` and `lateness_ms` itself and the
        writer accepts it without a "running" before it. So a failure is counted and logged,
        and the call goes on.
        """
        try:
            await self.send_status(req, self.status_event(req, "running", started_at=started,
                                                          lateness_ms=lateness))
        except TRANSIENT as exc:
            RUNNING_NOT_SENT.inc()
            log.warning("running status not sent", extra={"run_id": req.run_id,
                                                          "job_id": req.job_id,
                                                          "attempt": req.attempt,
                                                          "error": repr(exc)})

    async def until_done(self, write: str, req: RunRequested,
                         attempt: Callable[[], Awaitable[Any]]) -> None:
        """Retry a write that records a call (status, completion) until it succeeds.

        Once the call was made, letting the error through would let the lease lapse and the
        attempt be requeued: the webhook would fire again. So the write is retried with backoff
        instead, while `execute` keeps the lease renewed; only stopping the process (the drain's
        deadline cancels this) hands the attempt back. Both writes are idempotent: a status
        sent twice is applied once (statuses only move forward), and completing twice sets the
        same done flag and re-adds the same retry member (a redelivered retry is refused by its
        claim).
        """
        def retrying(exc: BaseException, delay: float) -> None:
            WRITE_RETRIES.labels(write).inc()
            log.warning("write after the call failed, retrying",
                        extra={"run_id": req.run_id, "job_id": req.job_id,
                               "attempt": req.attempt, "write": write,
                               "retry_in": delay, "error": repr(exc)})

        await until_done(attempt, retrying)

    async def fire(self, req: RunRequested, entry: Entry) -> Outcome:
        """Run the call; a cancel of the job or a replacing run aborts it as `cancelled`.

        The call runs in the attempt's own task, not a child task: a child starts a turn of
        the loop later, and at 200/s that turn waits behind other attempts' work (p99 3 to 4 ms,
        ADR 0045). An abort cancels this task while it is inside the call (`calls` holds it
        exactly then) and is taken back here with `uncancel`; any other cancel goes on up.
        """
        task = asyncio.current_task()
        assert task is not None
        self.calls[entry.runkey] = (task, req)
        IN_FLIGHT.inc()
        try:
            if isinstance(req.target, HttpTarget):
                target = without_denied_headers(req.target)
                return await fire_http(self.http, req, self.signing.sign(req, target))
            return await fire_kafka(self.target_producer, self.target_topics, req, req.target)
        except asyncio.CancelledError:
            reason = self.aborted.pop(entry.runkey, None)
            if reason is None or task.uncancel() > 0:
                raise  # not (only) an abort: a drain's deadline or a stop
            return Outcome("cancelled", error=reason)
        finally:
            IN_FLIGHT.dec()
            self.calls.pop(entry.runkey, None)
            self.aborted.pop(entry.runkey, None)

    async def not_fired(self, req: RunRequested, verdict: Start) -> None:
        """A stale or paused firing: its lease is released and the attempt stays open.

        Recorded as a `skipped` status that is not final: the run's row shows why nothing
        fired, and the current version's firing of this instant (or the resumed one-shot job's)
        overtakes it with the same run id and attempt. Nothing is completed, so nothing is
        used up (issue 6 defect 3).
        """
        SKIPPED.labels(verdict).inc()
        now = from_ms(await self.clock.now_ms())
        event = self.status_event(req, "skipped", finished_at=now, final=False,
                                  reason=NOT_FIRED[verdict])
        await self.until_done("status", req, lambda: self.send_status(req, event))
        log.info("attempt not fired", extra={"run_id": req.run_id, "job_id": req.job_id,
                                             "attempt": req.attempt, "reason": verdict})

    async def finish(self, req: RunRequested, entry: Entry, outcome: Outcome,
                     started: datetime | None, lateness: int | None) -> bool:
        """Report the attempt's status, then mark it done (and schedule a retry if due).

        Returns whether this was the run's final attempt.
        """
        finished = from_ms(await self.clock.now_ms())  # same clock as `started` and retries' due
        outcome = without_secrets(outcome, req)
        retry = should_retry(outcome, req.attempt, req.retry)
        retry_at = finished + timedelta(seconds=backoff_seconds(req.retry, req.attempt))
        event = self.status_event(
            req, outcome.status, started_at=started, finished_at=finished, lateness_ms=lateness,
            duration_ms=None if started is None else to_ms(finished) - to_ms(started),
            http_status=outcome.http_status, error=outcome.error,
            response_excerpt=outcome.excerpt, final=not retry,
            reason=f"retry at {retry_at.isoformat()}" if retry else outcome.reason,
            retry_at=retry_at if retry else None,
        )
        # The status is durable before the attempt counts as done.
        await self.until_done("status", req, lambda: self.send_status(req, event))
        await self.until_done("complete", req, lambda: self.due_set.complete(
            entry, entry.next_attempt() if retry else None, to_ms(retry_at)))
        FINISHED.labels(outcome.status).inc()
        # A JSON line per attempt is CPU and disk on the hot path (issue 8: 78 MB in 25 minutes
        # of benchmarks): the metrics count every outcome, the log keeps the ones worth reading.
        level = logging.DEBUG if outcome.status == "succeeded" else logging.INFO
        if log.isEnabledFor(level):
            log.log(level, "attempt finished", extra=_log_fields(req, outcome, lateness))
        return not retry

    async def watch_aborts(self) -> None:
        """Cancel running calls whose job was cancelled or which a newer run replaced."""
        calls = list(self.calls.items())
        if not calls:
            return
        flags = await self.due_set.abort_flags([(req.job_id, runkey) for runkey, (_, req) in calls])
        for (runkey, (task, req)), (cancelled, replaced) in zip(calls, flags, strict=True):
            reason = None
            if cancelled is not None and cancelled > req.job_version:
                reason = "job cancelled"
            elif replaced:
                reason = "replaced by a newer run"
            # Only while the attempt is still inside its call: the task is the attempt's own,
            # and cancelling it after the call would break the writes that record it.
            # Once only: a second cancel would outlive the `uncancel` in `fire`.
            current = self.calls.get(runkey)
            if reason and current is not None and current[0] is task and runkey not in self.aborted:
                self.aborted[runkey] = reason
                task.cancel()
                log.info("run aborted", extra={"run_id": req.run_id, "job_id": req.job_id,
                                               "reason": reason})


def without_secrets(outcome: Outcome, req: RunRequested) -> Outcome:
    """The outcome as stored and shown: no secret header value of the call in it."""
    headers = req.target.headers
    return replace(outcome, error=scrub_echo(outcome.error, headers),
                   excerpt=cut_excerpt(scrub_echo(outcome.excerpt, headers)))


def _log_fields(req: RunRequested, outcome: Outcome, lateness: int | None) -> dict[str, Any]:
    return {"run_id": req.run_id, "job_id": req.job_id, "attempt": req.attempt,
            "status": outcome.status, "http_status": outcome.http_status,
            "lateness_ms": lateness, "error": outcome.error}


class Consumer:
    def __init__(self, lifecycle: Lifecycle, executor: Executor, settings: Settings,
                 group: str = "duetime-executor") -> None:
        self.lifecycle, self.executor, self.settings = lifecycle, executor, settings
        self.group = group
        self.tracker = OffsetTracker()
        self.slots = asyncio.Semaphore(settings.max_in_flight)
        # Runs past their tenant's cap wait here, with the generation they were fetched under.
        self.share: TenantShare[tuple[ConsumerRecord[bytes, bytes], int]] = TenantShare(
            settings.tenant_cap, settings.tenant_max_waiting)
        self.tasks: set[asyncio.Task[None]] = set()
        self.consumer: AIOKafkaConsumer | None = None
        # Set once in-flight attempts are finished or handed back: leases and abort watching
        # must outlive the stop event, which only ends the intake.
        self.drained = asyncio.Event()

    def owns(self, tp: TopicPartition, generation: int) -> bool:
        """Whether `tp` is still assigned to us, without a revocation since `generation`."""
        return (self.consumer is not None and self.tracker.generation(tp) == generation
                and tp in self.consumer.assignment())

    async def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit what is done, for partitions we own; a failure is retried by the next one."""
        await commit_done(self.consumer, self.tracker, partitions)

    async def _one(self, msg: ConsumerRecord[bytes, bytes], generation: int,
                   tenant: str) -> None:
        try:
            await self._run(msg)
            self.tracker.finished(TopicPartition(msg.topic, msg.partition), msg.offset, generation)
        finally:
            self._hand_on(tenant)

    async def _run(self, msg: ConsumerRecord[bytes, bytes]) -> None:
        while True:
            try:
                claimed = await self.executor.claim(msg)
                break
            except (RedisError, KafkaError, OSError) as exc:
                # Nothing has run yet: keep the offset and try again once Redis is back.
                log.error("claim failed, retrying",
                          extra={"offset": msg.offset, "error": repr(exc)})
                if await self.lifecycle.sleep(1.0):
                    return
            except Exception as exc:  # poison: it must not hold back the partition's offsets
                await self.executor.poison(msg, None, f"cannot claim: {exc!r}")
                return
        if claimed is None:
            return
        req, entry = claimed
        try:
            await self.executor.execute(req, entry, msg.value or b"")
        except (RedisError, KafkaError, OSError) as exc:
            log.error("attempt not started; its lease will lapse and requeue it",
                      extra={"run_id": req.run_id, "attempt": req.attempt, "error": repr(exc)})
        except Exception as exc:  # poison: see Executor.poison
            await self.executor.poison(msg, entry, f"attempt failed: {exc!r}")

    def _hand_on(self, tenant: str) -> None:
        """A run ended: its slot and its tenant's place go to the tenant's next waiting run.

        A drain starts nothing new: runs still waiting are left uncommitted, for the next
        owner of their partition.
        """
        if self.lifecycle.stop.is_set():
            self.share.leave(tenant)
        else:
            while (waiting := self.share.handover(tenant)) is not None:
                WAITING.set(self.share.waiting_count())
                msg, generation = waiting
                if self.owns(TopicPartition(msg.topic, msg.partition), generation):
                    self._spawn(msg, generation, tenant)
                    return
                SKIPPED.labels("revoked").inc()  # revoked while it waited: the new owner's
        self.slots.release()

    def _spawn(self, msg: ConsumerRecord[bytes, bytes], generation: int, tenant: str) -> None:
        task = asyncio.create_task(self._one(msg, generation, tenant))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _slot(self, tp: TopicPartition, generation: int, msg: ConsumerRecord[bytes, bytes],
                    left: int) -> bool:
        """Wait for a free slot; False (and no slot) if `tp` was revoked meanwhile."""
        await self.slots.acquire()
        # The wait can span a rebalance: a partition revoked meanwhile belongs to another
        # consumer (or to us again, from its committed offset); its fetched rest is theirs.
        if self.owns(tp, generation):
            return True
        self.slots.release()
        SKIPPED.labels("revoked").inc(left)
        log.info("partition revoked while waiting for a slot",
                 extra={"partition": str(tp), "offset": msg.offset, "skipped": left})
        return False

    async def start(self, tp: TopicPartition, generation: int,
                    messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Start one task per message, waiting for a free slot before each.

        A run whose tenant is at its cap gives its slot back and waits aside (`TenantShare`),
        so the runs of other tenants behind it in the partition start on time.
        """
        for i, msg in enumerate(messages):
            if not await self._slot(tp, generation, msg, len(messages) - i):
                return
            self.tracker.started(tp, msg.offset)
            tenant = tenant_of(msg)
            if not self.share.admit(tenant):
                self.slots.release()
                if await self.share.wait_aside(tenant, (msg, generation)):
                    WAITING.set(self.share.waiting_count())
                    continue
                await self.slots.acquire()  # admitted while it waited for room
                if not self.owns(tp, generation):
                    self._hand_on(tenant)  # its slot and place go on; the rest is the new owner's
                    SKIPPED.labels("revoked").inc(len(messages) - i)
                    return
            self._spawn(msg, generation, tenant)

    async def consume(self) -> None:
        try:
            async with kafka.consumer(self.settings, self.group, self.executor.id,
                                      self.executor.topics.runs,
                                      listener=CommitOnRevoke(self.tracker, self.commit)) as consumer:
                self.consumer = consumer
                self.lifecycle.checks["caught_up"] = caught_up(consumer,
                                                               self.settings.kafka_ready_max_lag)
                self.lifecycle.ready = True
                while not self.lifecycle.stop.is_set():
                    batches = await consumer.getmany(timeout_ms=100, max_records=500)
                    # Read before any await: a revocation from here on moves the generation.
                    fetched = [(tp, self.tracker.generation(tp), msgs)
                               for tp, msgs in batches.items()]
                    for tp, generation, messages in fetched:
                        await self.start(tp, generation, messages)
                await self.drain()
                await self.commit()
                self.consumer = None
        finally:
            self.drained.set()

    async def drain(self) -> None:
        """Let running attempts finish within the grace period; the rest are handed back."""
        if not self.tasks:
            return
        log.info("draining", extra={"in_flight": len(self.tasks)})
        _, pending = await asyncio.wait(set(self.tasks), timeout=self.lifecycle.grace_seconds - 2)
        for task in pending:
            task.cancel()  # their leases lapse and the sweep requeues them
        await asyncio.gather(*pending, return_exceptions=True)

    async def commit_loop(self) -> None:
        while not await self.lifecycle.sleep(0.2):
            await self.commit()


async def watch_aborts(executor: Executor, until: asyncio.Event) -> None:
    """Abort cancelled or replaced calls until `until`: cancels win during a drain too."""
    while not await sleep_until(until, 0.2):
        try:
            await executor.watch_aborts()
        except (RedisError, OSError) as exc:
            log.warning("abort check failed", extra={"error": repr(exc)})


def workers(executor: Executor, consumer: Consumer) -> dict[str, Coroutine[Any, Any, None]]:
    """The executor's supervised tasks, apart from its HTTP endpoint."""
    return {
        "consume": consumer.consume(),
        "commit": consumer.commit_loop(),
        "leases": executor.leases.maintain(consumer.drained),
        "aborts": watch_aborts(executor, consumer.drained),
        "clock": executor.clock.keep_synced(consumer.drained),
    }


def target_settings(settings: Settings) -> Settings:
    """The Kafka settings of the target producer: the target principal, and no linger — a
    Kafka target's message is the firing itself, on the user's clock."""
    return settings.model_copy(update={"kafka_username": settings.kafka_target_username,
                                       "kafka_password": settings.kafka_target_password,
                                       "kafka_linger_ms": 0})


@asynccontextmanager
async def target_producer(settings: Settings) -> AsyncIterator[Any]:
    """The producer Kafka targets go through, authenticated as the target principal."""
    if settings.kafka_security_protocol != "PLAINTEXT" and not settings.kafka_target_username:
        log.warning("no Kafka target principal configured: Kafka targets will fail")
        yield None
        return
    async with kafka.producer(target_settings(settings), "executor-targets") as producer:
        yield producer


async def main(lifecycle: Lifecycle) -> None:
    settings = Settings()
    redis = redis_client(settings)
    session = client_session(EgressPolicy.parse(settings.egress_allow), settings.http_connections,
                             settings.http_connections_per_host)
    async with kafka.producer(settings, "executor") as producer, \
            target_producer(settings) as targets, \
            session, \
            postgres.pool(settings, read_only=True) as pool:
        # A finished attempt's done flag lives as long as its request can be redelivered.
        due_set = DueSet(redis, settings.due_shards,
                         redelivery_window_s=settings.run_redelivery_seconds)
        signing = SigningKeys()
        executor = Executor(due_set, producer, session, settings, signing=signing,
                            target_producer=targets)
        consumer = Consumer(lifecycle, executor, settings)
        try:
            if not await first_load(signing, pool, lifecycle):
                return
            await lifecycle.supervise({
                "http": serve(ops_app(lifecycle), settings.http_host, settings.http_port, lifecycle),
                "signing": keep_loaded(signing, pool, lifecycle, settings.signing_refresh_seconds),
                **workers(executor, consumer),
                **notifications.workers(lifecycle, settings, signing, executor.id),
            })
        finally:
            await redis.aclose()
