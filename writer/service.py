"""The writer: consumes commands and run statuses, persists them, emits outcomes."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter as Tally
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
)
from prometheus_client import Counter, Histogram
from pydantic import Field, ValidationError
from redis import exceptions as redis_errors

from duetime import kafka, postgres
from duetime.consumer_readiness import caught_up
from duetime.due_set import DueSet
from duetime.kafka_targets import TopicPolicy
from duetime.lifecycle import Lifecycle
from duetime.ops import ops_app, serve
from duetime.redis_client import redis_client
from duetime.settings import (
    HttpSettings,
    IngressSettings,
    JobLimitSettings,
    KafkaSettings,
    KafkaTargetSettings,
    PostgresSettings,
    RedeliverySettings,
    RedisSettings,
)
from duetime.sql import load_queries
from duetime.timeutil import to_ms, utcnow
from schemas.events import ID_PATTERN, DeadLetter, JobCommand, JobEvent, RunStatusChanged
from schemas.topics import (
    INGRESS_PARTITIONS,
    JOB_COMMANDS,
    JOB_COMMANDS_DLQ,
    JOB_EVENTS,
    RUNS_DLQ,
    RUNS_STATUS,
    ingress_tenant,
    ingress_topic,
)
from writer import alerts, runs
from writer.commands import CommandHandler, Rejected

log = logging.getLogger(__name__)
QUERIES = load_queries("writer")
APPLIED = Counter("duetime_writer_commands_total", "Commands processed", ["type", "outcome"])
DEAD = Counter("duetime_writer_dead_letters_total", "Messages sent to a dead-letter topic", ["topic"])
STATUSES = Counter("duetime_writer_run_statuses_total", "Run status events persisted")
BATCH = Histogram("duetime_writer_batch_seconds", "Time to persist one consumed batch")
UNSENT = Counter("duetime_writer_unsendable_total", "Outgoing messages Kafka refused for good")
EXPIRED = Counter("duetime_writer_runs_expired_total",
                  "job_runs history past its retention: partitions dropped, default rows deleted",
                  ["action"])
Outbox = list[tuple[str, bytes | None, bytes]]
# Postgres error classes that say nothing about the message being applied: the connection,
# resources, an operator, a conflict to retry, or a deployment whose schema does not match
# the code (a migration not applied yet). Class 22 (data) and 23 (integrity) are the
# message's fault: those are dead-lettered.
_PG_RETRY_CLASSES = frozenset({"08", "28", "3D", "3F", "40", "42", "53", "55", "57", "58"})
_RETRY_TYPES = (asyncpg.InterfaceError, OSError, KafkaConnectionError, KafkaTimeoutError,
                redis_errors.ConnectionError, redis_errors.TimeoutError,
                redis_errors.ReadOnlyError, redis_errors.OutOfMemoryError,
                redis_errors.TryAgainError, redis_errors.ClusterDownError)
DLQ_VALUE_CHARS = 100_000  # a dead letter must itself fit in a Kafka message
_ID = re.compile(ID_PATTERN)


def transient(exc: BaseException) -> bool:
    """An error of the infrastructure rather than of one message: retry, never dead-letter."""
    if isinstance(exc, asyncpg.InvalidCachedStatementError):
        # A migration changed what a prepared statement returns (class 0A, "not supported"):
        # asyncpg has dropped its statement cache, so the batch's retry prepares it again.
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return (exc.sqlstate or "")[:2] in _PG_RETRY_CLASSES
    if isinstance(exc, KafkaError) and exc.retriable:
        return True
    return isinstance(exc, _RETRY_TYPES)


class Retrying:
    """How long the writer has been retrying one batch. Retrying forever is right for an
    outage (nothing is lost; it resumes when the dependency is back) but a silent warning loop
    is wrong for what does not heal by waiting — a schema that does not match the code (class
    42: a migration not applied, or a SQL bug). Past `stuck_after` the writer says so loudly:
    an error log per minute and /readyz `applying` false, so `make status` and probes show it."""

    def __init__(self, stuck_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stuck_after, self.clock = stuck_after, clock
        self.since: float | None = None
        self.told = 0.0

    def failed(self, exc: BaseException) -> None:
        now = self.clock()
        if self.since is None:
            self.since = now
        if now - self.since < self.stuck_after:
            log.warning("batch failed, retrying", extra={"error": repr(exc)[:300]})
        elif now - self.told >= 60:
            self.told = now
            hint = ("the schema does not match the code: a migration not applied?"
                    if (getattr(exc, "sqlstate", None) or "").startswith("42") else
                    "a dependency has been failing this long")
            log.error("batch still failing: consuming has stopped", extra={
                "error": repr(exc)[:300], "seconds": round(now - self.since), "hint": hint})

    def succeeded(self) -> None:
        self.since = None

    async def applying(self) -> bool:
        """The readiness check: false once one batch has failed for `stuck_after`."""
        return self.since is None or self.clock() - self.since < self.stuck_after


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Settings(KafkaSettings, KafkaTargetSettings, IngressSettings, PostgresSettings,
               RedisSettings, RedeliverySettings, HttpSettings, JobLimitSettings):
    http_port: int = 18103
    # A batch failing this long is reported loudly (error log, /readyz `applying` false).
    stuck_after_seconds: float = Field(default=60.0, gt=0)
    # Run history older than this is dropped a whole month at a time (expire_job_runs, ADR 0013).
    # At least 31 days, so last month's partition, which maintenance keeps ready, is never
    # dropped and created again.
    runs_retention_days: int = Field(default=90, ge=31)
    # Command ids remembered against replays (ADR 0010); longer than the commands topic keeps
    # messages (Kafka's default retention is 7 days), since a replay comes from that topic.
    applied_commands_retention_days: int = Field(default=14, ge=1)
    # GET /alerts lists "recent" alerts: older ones are deleted (ADR 0033).
    alerts_retention_days: int = Field(default=30, ge=1)
    # How long the broker may hold an empty fetch. New records end the wait at once; it bounds
    # only a record on a partition left out of the fetch in flight (its earlier records were
    # still being applied). 100 ms rather than 20 took the idle writer from 3.4 to 1.3 % of a
    # core; the read-after-write lag (bench.read_lag) was the same with either (p95 46 ms).
    kafka_fetch_max_wait_ms: int = 100
    # 0: the writer queues a whole batch's outcome events before it waits for them, so they
    # share requests anyway, and it applies nothing more until they are acknowledged — a
    # linger is only waiting. 5 ms saved ~0.03 ms of Kafka CPU per job at 1,000/s and cost
    # 10 ms of read-after-write lag (bench.read_lag p50 15 -> 24 ms, p95 20 -> 31; A/B pairs).
    kafka_linger_ms: int = Field(default=0, ge=0, le=100)
    load_ahead_seconds: float = Field(default=15.0, gt=0)


def dead_letter(msg: ConsumerRecord[bytes, bytes], reason: str) -> DeadLetter:
    value = (msg.value or b"").decode(errors="replace")
    if len(value) > DLQ_VALUE_CHARS:
        reason = f"{reason[:1900]} (value cut to its first {DLQ_VALUE_CHARS} of {len(value)} characters)"
        value = value[:DLQ_VALUE_CHARS]
    return DeadLetter(source_topic=msg.topic, partition=msg.partition, offset=msg.offset,
                      key=msg.key.decode(errors="replace") if msg.key else None,
                      value=value, reason=reason[:2000], at=utcnow())


def _names(raw: bytes | None) -> tuple[str | None, str | None, str | None]:
    """Best effort (command_id, job_id, tenant) of a command that does not validate."""
    try:
        data = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    found = [data.get(k) for k in ("command_id", "job_id", "tenant")]
    ok = [v if isinstance(v, str) and _ID.fullmatch(v) else None for v in found]
    return ok[0], ok[1], ok[2]


def ingress_command(raw: bytes | None, tenant: str) -> JobCommand:
    """A command from `tenant`'s ingress topic: the tenant is the topic's, whose only writer is
    that tenant's Kafka principal (ADR 0015). A body naming another tenant is refused whole."""
    data = orjson.loads(raw or b"")
    if not isinstance(data, dict):
        raise ValueError("a command must be a JSON object")
    claimed = data.get("tenant", tenant)
    if claimed != tenant:
        raise ValueError(f"tenant {str(claimed)[:64]!r} in the body is not the tenant of "
                         f"ingress topic {ingress_topic(tenant)!r} ({tenant!r})")
    return JobCommand.model_validate({**data, "tenant": tenant})


class Writer:
    def __init__(self, pool: asyncpg.Pool[Any], producer: AIOKafkaProducer, due_set: DueSet,
                 settings: Settings) -> None:
        self.pool, self.producer, self.due_set = pool, producer, due_set
        self.commands = CommandHandler(QUERIES, due_set,
                                       timedelta(seconds=settings.load_ahead_seconds), settings,
                                       TopicPolicy(settings))
        self.dead_alerts: list[alerts.Alert] = []

    async def handle_batch(self, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Persist one batch; safe to repeat (every step is idempotent).

        Only transient errors escape (the caller retries the batch). A message that cannot be
        applied is poison: it is dead-lettered with the reason and the batch goes on.
        """
        statuses: list[tuple[ConsumerRecord[bytes, bytes], RunStatusChanged]] = []
        commands: list[tuple[ConsumerRecord[bytes, bytes], JobCommand]] = []
        outbox: Outbox = []
        self.dead_alerts = []
        for msg in messages:
            if msg.topic == RUNS_STATUS:
                try:
                    statuses.append((msg, RunStatusChanged.model_validate_json(msg.value or b"")))
                except ValidationError as exc:
                    _, job_id, tenant = _names(msg.value)
                    outbox.append(self._dlq(msg, RUNS_DLQ, f"invalid run status: {exc}",
                                            tenant, job_id))
            else:
                cmd = self._prepare(msg, outbox)
                if cmd is not None:
                    commands.append((msg, cmd))
        await self._commands(commands, outbox)
        await self._statuses(statuses, outbox)
        await self._record_dead_letters()
        await self._send(outbox)

    async def _commands(self, commands: list[tuple[ConsumerRecord[bytes, bytes], JobCommand]],
                        outbox: Outbox) -> None:
        """Creates of jobs named once in the batch in one transaction (ADR 0023); everything
        else one by one, in the batch's order. A job named twice goes one by one entirely, so
        each job's commands apply in their order (a create, then a patch of it)."""
        named = Tally(cmd.job_id for _, cmd in commands)
        together = [(m, c) for m, c in commands if c.type == "create" and named[c.job_id] == 1]
        alone = [(m, c) for m, c in commands if not (c.type == "create" and named[c.job_id] == 1)]
        for msg, cmd in await self._creates(together, outbox) + alone:
            outbox.extend(await self._command(msg, cmd))

    async def _statuses(self, statuses: list[tuple[ConsumerRecord[bytes, bytes], RunStatusChanged]],
                        outbox: Outbox) -> None:
        """The batch in one transaction; if it fails for good, each status in its own."""
        if not statuses:
            return
        try:
            await self._persist([status for _, status in statuses])
            return
        except Exception as exc:
            if transient(exc):
                raise
            log.warning("run status batch failed, applying one by one",
                        extra={"count": len(statuses), "error": _describe(exc)[:300]})
        for msg, status in statuses:
            try:
                await self._persist([status])
            except Exception as exc:
                if transient(exc):
                    raise
                outbox.append(self._dlq(msg, RUNS_DLQ, f"cannot apply run status: {_describe(exc)}",
                                        status.tenant, status.job_id))

    async def _persist(self, statuses: list[RunStatusChanged]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            finished = await runs.persist(conn, QUERIES, statuses)
        STATUSES.inc(len(statuses))
        await self.due_set.forget_many([(job_id, version, state)
                                        for job_id, state, version in finished
                                        if state == "completed"])

    async def _record_dead_letters(self) -> None:
        """The batch's `dlq` alerts, after its dead letters were decided (ADR 0033)."""
        if not self.dead_alerts:
            return
        try:
            async with self.pool.acquire() as conn:
                await alerts.record(conn, QUERIES, self.dead_alerts)
        except Exception as exc:
            if transient(exc):
                raise
            # The dead letters themselves are what matters: an alert that cannot be stored is
            # logged, never a reason to stop consuming.
            log.error("dlq alerts not recorded", extra={"error": _describe(exc)[:300]})

    def _dlq(self, msg: ConsumerRecord[bytes, bytes], topic: str, reason: str,
             tenant: str | None = None, job_id: str | None = None) -> tuple[str, bytes | None, bytes]:
        """The dead letter of `msg`; when its tenant is known, a `dlq` alert of theirs too."""
        DEAD.labels(topic).inc()
        if tenant:
            self.dead_alerts.append(alerts.dead_letter(tenant, job_id, msg.topic, msg.partition,
                                                       msg.offset, reason, utcnow()))
        log.warning("dead letter", extra={"topic": msg.topic, "offset": msg.offset,
                                          "reason": reason[:300]})
        return topic, msg.key, kafka.encode(dead_letter(msg, reason))

    async def _creates(self, creates: list[tuple[ConsumerRecord[bytes, bytes], JobCommand]],
                       outbox: Outbox) -> list[tuple[ConsumerRecord[bytes, bytes], JobCommand]]:
        """Creates of distinct jobs in one transaction and one due-set pipeline; returns those
        left to the one-by-one path: creates of jobs that exist, and, if the batch fails for
        good, all of them (so that only the poison one is dead-lettered)."""
        if not creates:
            return []
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                done = await self.commands.create_many(conn, [cmd for _, cmd in creates])
                # Inside the transaction, as in _apply: a crash before the commit rolls back
                # Postgres, and the replayed batch loads Redis again (idempotent).
                await self.due_set.load_many(
                    [applied.load for _, applied in done.applied if applied.load is not None])
        except Exception as exc:
            if transient(exc):
                raise
            log.warning("create batch failed, applying one by one",
                        extra={"count": len(creates), "error": _describe(exc)[:300]})
            return creates
        for cmd, applied in done.applied:
            APPLIED.labels(cmd.type, "applied").inc()
            outbox.append((JOB_EVENTS, (cmd.job_id or "").encode(), kafka.encode(applied.event)))
        for cmd, rejection in done.rejected:
            outbox.append(self._rejection(cmd, rejection))
        messages = {cmd.job_id: msg for msg, cmd in creates}
        return [(messages[cmd.job_id], cmd) for cmd in done.deferred]

    def _prepare(self, msg: ConsumerRecord[bytes, bytes], outbox: Outbox) -> JobCommand | None:
        """The command in `msg`, or None when it is poison (dead-lettered and rejected) or
        expired (rejected): the answer is then in `outbox`."""
        owner = ingress_tenant(msg.topic)
        try:
            cmd = JobCommand.model_validate_json(msg.value or b"") if owner is None \
                else ingress_command(msg.value, owner)
        except (ValidationError, ValueError) as exc:
            APPLIED.labels("unknown", "invalid").inc()
            command_id, job_id, tenant = _names(msg.value)
            outbox.extend(self._poison_command(msg, f"invalid command: {exc}", command_id, job_id,
                                               owner or tenant))
            return None
        if (cmd.accept_by is not None and msg.timestamp_type == kafka.LOG_APPEND_TIME
                and msg.timestamp > to_ms(cmd.accept_by)):
            # The submitter already answered "not accepted" (503) for this command.
            APPLIED.labels(cmd.type, "expired").inc()
            event = JobEvent(type="job.rejected", job_id=cmd.job_id, tenant=cmd.tenant,
                             command_id=cmd.command_id, command_type=cmd.type, at=utcnow(),
                             reason="expired: Kafka appended the command after its accept_by")
            outbox.append((JOB_EVENTS, (cmd.job_id or "").encode(), kafka.encode(event)))
            return None
        if cmd.type == "create" and cmd.job_id is None:
            # Other services may leave the id to us; derive it from the command so a replay
            # of the same message creates the same job.
            cmd = cmd.model_copy(update={"job_id": cmd.command_id})
        return cmd

    async def _command(self, msg: ConsumerRecord[bytes, bytes], cmd: JobCommand) -> Outbox:
        """Apply one command in its own transaction; poison is dead-lettered and rejected."""
        try:
            return await self._apply(cmd)
        except Exception as exc:
            if transient(exc):
                raise
            APPLIED.labels(cmd.type, "poison").inc()
            return self._poison_command(msg, f"cannot apply command: {_describe(exc)}",
                                        cmd.command_id, cmd.job_id or cmd.command_id,
                                        cmd.tenant, cmd.type)

    def _poison_command(self, msg: ConsumerRecord[bytes, bytes], reason: str,
                        command_id: str | None, job_id: str | None, tenant: str | None,
                        command_type: str | None = None) -> Outbox:
        """Dead-letter the command and, when it names itself, tell its submitter."""
        outbox = [self._dlq(msg, JOB_COMMANDS_DLQ, reason, tenant, job_id)]
        if command_id is not None:
            event = JobEvent(type="job.rejected", job_id=job_id, tenant=tenant,
                             command_id=command_id, command_type=command_type, at=utcnow(),
                             reason=reason[:2000])
            outbox.append((JOB_EVENTS, (job_id or "").encode(), kafka.encode(event)))
        return outbox

    async def _apply(self, cmd: JobCommand) -> Outbox:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                applied = await self.commands.apply(conn, cmd)
                if applied.load is not None:
                    await self.due_set.load_many([applied.load])
                if applied.cancel_flag is not None:
                    job_id, version = applied.cancel_flag
                    # Aborts calls of the job still running (checked at start with the tombstone).
                    await self.due_set.flag_cancelled(job_id, version)
            event = applied.event
            APPLIED.labels(cmd.type, "applied").inc()
            # Per command at DEBUG (issue 8: 58 MB of writer log in 25 minutes of benchmarks);
            # the metric above counts them, rejections stay at INFO below.
            log.debug("command applied", extra={"job_id": cmd.job_id, "type": cmd.type,
                                                "command_id": cmd.command_id})
        except Rejected as exc:
            return [self._rejection(cmd, exc)]
        return [(JOB_EVENTS, (cmd.job_id or "").encode(), kafka.encode(event))]

    @staticmethod
    def _rejection(cmd: JobCommand, exc: Rejected) -> tuple[str, bytes | None, bytes]:
        APPLIED.labels(cmd.type, "rejected").inc()
        log.info("command rejected", extra={"job_id": cmd.job_id, "type": cmd.type,
                                            "reason": str(exc)})
        event = JobEvent(type="job.rejected", job_id=cmd.job_id, tenant=cmd.tenant,
                         command_id=cmd.command_id, command_type=cmd.type, at=utcnow(),
                         reason=str(exc))
        return JOB_EVENTS, (cmd.job_id or "").encode(), kafka.encode(event)

    async def _send(self, outbox: Outbox) -> None:
        """Send every outcome; one Kafka refuses for good (e.g. too large) is logged, not retried."""
        futures: list[asyncio.Future[Any]] = []
        for topic, key, value in outbox:
            try:
                futures.append(await self.producer.send(topic, value, key=key))
            except KafkaError as exc:
                self._unsent(exc, topic)
        for result in await asyncio.gather(*futures, return_exceptions=True):
            if isinstance(result, BaseException):
                self._unsent(result, "")

    @staticmethod
    def _unsent(exc: BaseException, topic: str) -> None:
        if transient(exc) or not isinstance(exc, Exception):
            raise exc
        UNSENT.inc()
        log.error("message not sent", extra={"topic": topic, "error": _describe(exc)[:300]})


async def ingress_topics(settings: Settings) -> list[str]:
    """The ingress topics of the configured tenants, created when missing: a tenant added
    since the topics were made (a key created on a running stack) must not keep the writer from
    starting — a subscription to a topic that does not exist never gets ready. One that cannot
    be created is left out, with a warning: that tenant's Kafka ingress waits, nothing else."""
    wanted = {ingress_topic(t): INGRESS_PARTITIONS for t in settings.ingress_tenant_list}
    if not wanted:
        return []
    try:
        created = await kafka.ensure_topics(settings, wanted)
    except KafkaConnectionError:
        raise  # Kafka is away: the service's restart (and its backoff) is the answer
    except KafkaError as exc:
        async with kafka.admin(settings) as client:
            existing = set(await client.list_topics())
        missing = sorted(set(wanted) - existing)
        if missing:
            log.warning("ingress topics missing and not created: those tenants' Kafka ingress "
                        "is off until `duetime topics` creates them",
                        extra={"topics": missing, "error": repr(exc)})
        return [t for t in wanted if t in existing]
    if created:
        log.info("ingress topics created", extra={"topics": created})
    return list(wanted)


async def consume(lifecycle: Lifecycle, writer: Writer, settings: Settings) -> None:
    ingress = await ingress_topics(settings)
    async with kafka.consumer(settings, "duetime-writer", "writer", JOB_COMMANDS,
                              RUNS_STATUS, *ingress) as consumer:
        lifecycle.checks["caught_up"] = caught_up(consumer, settings.kafka_ready_max_lag)
        retrying = Retrying(settings.stuck_after_seconds)
        lifecycle.checks["applying"] = retrying.applying
        lifecycle.ready = True
        while not lifecycle.stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            messages = [m for part in batches.values() for m in part]
            if not messages:
                continue
            with BATCH.time():
                while True:
                    try:
                        await writer.handle_batch(messages)
                        break
                    except Exception as exc:
                        if not transient(exc):
                            raise  # a bug: handle_batch lets only transient errors out
                        # Nothing is committed: retry the same batch once the dependency is back.
                        retrying.failed(exc)
                        if await lifecycle.sleep(1.0):
                            return
                retrying.succeeded()
            try:
                await consumer.commit()
            except CommitFailedError as exc:
                # A rebalance took partitions away; their new owner replays from the last
                # commit, which is harmless because every write is idempotent.
                log.warning("commit failed after rebalance", extra={"error": repr(exc)})


async def expire_runs(pool: asyncpg.Pool[Any], retention_days: int) -> list[asyncpg.Record]:
    """Drop job_runs history past its retention; returns what was done (expire_job_runs)."""
    done = await pool.fetch(QUERIES["expire_runs"], utcnow() - timedelta(days=retention_days))
    for row in done:
        EXPIRED.labels(row["action"].split(":")[0]).inc()
        level = logging.WARNING if row["action"].startswith("kept") else logging.INFO
        log.log(level, "run history expired", extra={
            "partition": row["partition_name"], "action": row["action"], "runs": row["runs"]})
    return done


async def maintain_partitions(lifecycle: Lifecycle, pool: asyncpg.Pool[Any],
                              settings: Settings) -> None:
    while not lifecycle.stop.is_set():
        try:
            await pool.execute(QUERIES["ensure_partitions"])
            await expire_runs(pool, settings.runs_retention_days)
            await pool.execute(QUERIES["expire_applied_commands"],
                               settings.applied_commands_retention_days)
            await pool.execute(QUERIES["expire_alerts"], settings.alerts_retention_days)
        except Exception as exc:
            if not transient(exc):
                raise
            log.warning("partition maintenance failed", extra={"error": repr(exc)})
        if await lifecycle.sleep(3600):
            return


@asynccontextmanager
async def write_pool(settings: Settings) -> AsyncIterator[asyncpg.Pool[Any]]:
    """The writer's connections. It takes no session state (no SET, LISTEN or session lock),
    so its statements stay prepared as the search service's do (ADR 0048): at 200 firings/s
    every status is a batch of its own, and a Parse round trip per statement plus a reset
    query per release cost Postgres a quarter of its CPU there. Plans stay custom."""
    async with postgres.pool(settings, cache_statements=True) as pool:
        yield pool


async def main(lifecycle: Lifecycle) -> None:
    settings = Settings()
    redis = redis_client(settings)
    due_set = DueSet(redis, settings.due_shards, redelivery_window_s=settings.run_redelivery_seconds)
    async with write_pool(settings) as pool, kafka.producer(settings, "writer") as producer:
        writer = Writer(pool, producer, due_set, settings)
        try:
            await lifecycle.supervise({
                "http": serve(ops_app(lifecycle), settings.http_host, settings.http_port, lifecycle),
                "consume": consume(lifecycle, writer, settings),
                "partitions": maintain_partitions(lifecycle, pool, settings),
                "alerts": alerts.keep_publishing(lifecycle, pool, producer, QUERIES, transient),
                "waiting": alerts.keep_raising_waiting(lifecycle, pool, due_set, QUERIES,
                                                       transient),
            })
        finally:
            await redis.aclose()
