"""Drives random histories against the real stack through the gateway while a nemesis injects
faults, then checks the sink, `job_runs` and the jobs' states against tests/model/model.py.

Everything random comes from one seed, so a failure prints the seed that replays it:
`make model SEED=… MINUTES=…`.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from duetime.kafka import client_options
from duetime.settings import KafkaSettings
from schemas.topics import JOB_EVENTS, PARTITIONS
from tests.model.model import (
    Command,
    Hit,
    JobHistory,
    Slot,
    Verdict,
    aborted_by_cancel,
    check,
    expect,
    lost_with_executor,
)
from tests.support.kafka import kafka_settings
from tests.support.sink import Hit as SinkHit
from tests.support.sink import Sink
from tests.support.stack import ROOT, stack

# Services the nemesis may crash or freeze; the APIs and the gateway stay up (a 503 there is the
# client's to retry, covered by tests/faults/test_kafka_down.py).
VICTIMS = ("executor", "dispatcher", "watcher", "writer")
# What it does, by weight: crash or freeze a service, restart Redis or Postgres, flush Redis (the
# watcher rebuilds the due-set from Postgres), make the sink slow or fail every call a while.
ACTS = {"kill": 4, "stop": 3, "restart-redis": 1, "flush-redis": 1, "restart-postgres": 1,
        "slow-sink": 1, "failing-sink": 1}
# Faults that stop firing on time: recurring firings inside them may follow the catch-up policy.
FIRING_PATH = frozenset({"executor", "dispatcher", "watcher", "redis", "postgres"})
FAIL_RETRY = {"max_attempts": 3, "initial_delay_seconds": 1.0, "multiplier": 1.0, "jitter": False}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@dataclass
class Fault:
    service: str
    kind: str  # "kill" (SIGKILL, then start again) or "stop" (SIGSTOP, then SIGCONT)
    start_ms: int
    end_ms: int


@dataclass
class Report:
    seed: int
    histories: list[JobHistory]
    faults: list[Fault]
    verdicts: dict[str, Verdict]
    hits: dict[str, list[Hit]]
    wrong_state: dict[str, tuple[str, str]] = field(default_factory=dict)  # job: (want, got)
    unrecorded: dict[str, list[str]] = field(default_factory=dict)  # job: run ids not succeeded
    unapplied: list[str] = field(default_factory=list)  # jobs with a command never applied

    @property
    def ok(self) -> bool:
        return (all(v.ok for v in self.verdicts.values()) and not self.wrong_state
                and not self.unrecorded and not self.unapplied)

    def figures(self) -> dict[str, int]:
        verdicts = self.verdicts.values()
        return {
            "jobs": len(self.histories),
            "commands": sum(1 + len(h.commands) for h in self.histories),
            "firings": sum(len(h) for h in self.hits.values()),
            "faults": len(self.faults),
            "lost": sum(len(v.lost) for v in verdicts),
            "must_not_fire": sum(len(v.unexpected) for v in verdicts),
            "early": sum(len(v.early) for v in verdicts),
            "retries_missing": sum(len(v.retry_missing) for v in verdicts),
            "duplicates": sum(v.duplicates for v in verdicts),
            "cancelled_in_backlog": sum(v.cancelled_in_backlog for v in verdicts),
            "wrong_state": len(self.wrong_state),
            "unrecorded": len(self.unrecorded),
        }

    def explain(self) -> str:
        """The seed, the figures, and the history of every job that broke a promise."""
        t0 = min((h.created_ms for h in self.histories), default=0)
        lines = [f"seed {self.seed}: {self.figures()}"]
        lines += [f"  fault {f.service} {f.kind} {f.start_ms - t0}..{f.end_ms - t0} ms"
                  for f in self.faults]
        bad = {h.job_id for h in self.histories
               if not self.verdicts[h.job_id].ok or h.job_id in self.wrong_state
               or h.job_id in self.unrecorded or h.job_id in self.unapplied}
        for h in self.histories:
            if h.job_id not in bad:
                continue
            v = self.verdicts[h.job_id]
            lines.append(f"  job {h.key} {h.job_id} {h.schedule} created +{h.created_ms - t0} "
                         f"fail_first={h.fail_first}")
            for c in h.commands:
                applied = None if c.applied_ms is None else c.applied_ms - t0
                lines.append(f"    {c.kind} sent +{c.sent_ms - t0} acked +{c.acked_ms - t0} "
                             f"applied +{applied} {c.path or c.run_id or ''}")
            for hit in self.hits.get(h.job_id, []):
                lines.append(f"    hit sched +{hit.scheduled_ms - t0} recv +{hit.received_ms - t0}"
                             f" attempt {hit.attempt} {hit.path.rsplit('/', 1)[-1]}")
            for name in ("lost", "unexpected", "early", "retry_missing", "wrong_key"):
                for item in getattr(v, name):
                    at = item.lo_ms if isinstance(item, Slot) else item.scheduled_ms
                    lines.append(f"    !! {name} at +{at - t0}: {item}")
            if h.job_id in self.wrong_state:
                lines.append(f"    !! state want/got {self.wrong_state[h.job_id]}")
            if h.job_id in self.unrecorded:
                lines.append(f"    !! runs not recorded as succeeded: {self.unrecorded[h.job_id]}")
            if h.job_id in self.unapplied:
                lines.append("    !! a command was never applied")
        return "\n".join(lines)


class Events:
    """Collects the writer's `job.*` events: when (and whether) each command was applied."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
        self.applied: dict[str, dict[str, int]] = {}  # job_id -> command_id -> applied ms
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign([TopicPartition(JOB_EVENTS, p) for p in range(PARTITIONS[JOB_EVENTS])])
        await self.consumer.seek_to_end()
        for tp in self.consumer.assignment():
            await self.consumer.position(tp)  # fix the start before any command is sent
        self.task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for msg in messages:
                    event = orjson.loads(msg.value or b"{}")
                    job, command = event.get("job_id"), event.get("command_id")
                    if job and command:
                        at = datetime.fromisoformat(event["at"].replace("Z", "+00:00"))
                        self.applied.setdefault(job, {}).setdefault(
                            command, round(at.timestamp() * 1000))

    def order(self, job_id: str) -> list[int]:
        """Applied instants of the job's distinct commands, in the order they were applied
        (a replay after a writer crash repeats an event; its first instant counts)."""
        return list(self.applied.get(job_id, {}).values())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()


class Nemesis:
    def __init__(self, rng: random.Random, sink: Sink, redis_url: str) -> None:
        self.rng, self.sink, self.redis_url = rng, sink, redis_url
        self.faults: list[Fault] = []
        self.failing_until = 0.0  # the sink answers 500 to everything until then (monotonic)
        self.last_answer: dict[str, int] = {}  # run id -> the status the sink answered last

    async def _stack(self, *args: str) -> None:
        await asyncio.to_thread(stack, *args)

    async def strike(self) -> None:
        act = self.rng.choices(list(ACTS), weights=list(ACTS.values()))[0]
        down = self.rng.uniform(0.3, 2.0)
        start = now_ms()
        service = {"restart-redis": "redis", "flush-redis": "redis",
                   "restart-postgres": "postgres"}.get(act, "sink")
        if act in ("kill", "stop"):
            service = self.rng.choice(VICTIMS)
            await (self._kill(service, down) if act == "kill" else self._freeze(service, down))
        elif act.startswith("restart-"):
            await self._stack("stop", service)
            await asyncio.sleep(down)
            await self._stack("start", service)
        elif act == "flush-redis":
            async with Redis.from_url(self.redis_url) as redis:
                await redis.flushall()
            await asyncio.sleep(1.5)  # the watcher notices within a poll and rebuilds
        elif act == "slow-sink":
            self.sink.delay_seconds = self.rng.uniform(0.2, 1.5)
            await asyncio.sleep(self.rng.uniform(2, 5))
            self.sink.delay_seconds = 0
        else:
            self.failing_until = time.monotonic() + self.rng.uniform(1, 3)
            await asyncio.sleep(self.failing_until - time.monotonic())
        self.faults.append(Fault(service, act, start, now_ms()))

    async def _kill(self, service: str, down: float) -> None:
        await self._stack("kill", service)
        await asyncio.sleep(down)
        await self._stack("start", service)

    async def _freeze(self, service: str, down: float) -> None:
        pid = int((ROOT / ".stack" / "run" / f"{service}.pid").read_text().split()[0])
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(down)
        finally:
            os.kill(pid, signal.SIGCONT)

    def status_for(self, hit: SinkHit) -> int:
        failing = time.monotonic() < self.failing_until or _first_attempt_fails(hit)
        status = 500 if failing else 200
        # A slow answer may never reach the executor (a cancel aborts the call): unknown.
        self.last_answer[hit.headers.get("X-Duetime-Run-Id", "")] = \
            0 if self.sink.delay_seconds else status
        return status

    def executor_kills(self) -> list[tuple[int, int]]:
        return [(f.start_ms, f.end_ms) for f in self.faults
                if f.service == "executor" and f.kind == "kill"]

    def firing_windows(self) -> list[tuple[int, int]]:
        return [(f.start_ms, f.end_ms) for f in self.faults if f.service in FIRING_PATH]


class Workload:
    def __init__(self, api: httpx.AsyncClient, sink: Sink, seed: int, seconds: float,
                 faults: bool) -> None:
        self.api, self.sink, self.seed = api, sink, seed
        self.rng = random.Random(seed)
        self.seconds, self.faults = seconds, faults
        self.base = f"/model/{seed}-{uuid.uuid4().hex[:8]}"
        self.jobs: list[JobHistory] = []
        self.state: dict[str, str] = {}  # the generator's own view: active, paused, cancelled
        self.created: dict[str, int] = {}  # job_id -> sent ms (created_ms comes from Postgres)

    # -- commands ----------------------------------------------------------------------------
    async def _send(self, method: str, url: str, body: Any = None) -> tuple[httpx.Response, int]:
        for _ in range(30):
            sent = now_ms()
            resp = await self.api.request(method, url, json=body)
            if resp.status_code == 503 and "was not accepted" in resp.text:
                await asyncio.sleep(0.5)  # e.g. Postgres restarting: never took effect, retry
                continue
            assert resp.status_code in (201, 202), (method, url, resp.status_code, resp.text)
            return resp, sent
        raise AssertionError(f"{method} {url} not accepted for 15 s")

    def _schedule(self) -> dict[str, Any]:
        kind = self.rng.choices(["once", "delay", "now", "interval", "cron"],
                                weights=[15, 20, 10, 25, 30])[0]
        if kind == "once":
            return {"type": "once", "at": _iso_ms(now_ms() + self.rng.randint(-5000, 15000))}
        if kind == "delay":
            return {"type": "delay", "seconds": round(self.rng.uniform(0.3, 12), 3)}
        if kind == "now":
            return {"type": "now"}
        if kind == "interval":
            return {"type": "interval", "every_seconds": self.rng.choice([1, 2, 3, 5])}
        every = self.rng.choice([1, 2, 3, 5])
        return {"type": "cron", "expression": f"*/{every} * * * * *", "timezone": "UTC"}

    async def create(self) -> JobHistory:
        key = f"j{len(self.jobs)}"
        fail_first = self.rng.random() < 0.2
        path = f"{self.base}/{key}/{'fail1' if fail_first else 'ok'}/v0"
        spec: dict[str, Any] = {"name": f"model-{key}", "schedule": self._schedule(),
                                "target": {"type": "http", "url": self.sink.url(path)}}
        if fail_first:
            spec["retry"] = FAIL_RETRY
        resp, sent = await self._send("POST", "/jobs", spec)
        job = JobHistory(key, resp.json()["job_id"], spec["schedule"], path, created_ms=sent,
                         fail_first=fail_first)
        self.jobs.append(job)
        self.state[job.job_id] = "active"
        return job

    def _choices(self, job: JobHistory) -> list[str]:
        state = self.state[job.job_id]
        if state == "cancelled":
            return []
        if job.one_shot:
            # Editing a delay job (which re-anchors it) is still left out; see docs/guarantees.md.
            edits = ["patch"] if job.schedule["type"] == "once" else []
            if state == "paused":
                return ["resume", "resume", "cancel", *edits]
            return ["cancel", "pause", *edits]
        if state == "paused":
            return ["resume", "resume", "run", "patch", "cancel"]
        return ["pause", "patch", "patch", "run", "run", "cancel"]

    async def command(self, job: JobHistory) -> None:
        choices = self._choices(job)
        if not choices:
            return
        kind = self.rng.choice(choices)
        url = f"/jobs/{job.job_id}"
        path = run_id = None
        if kind == "patch":
            path = job.path.rsplit("/", 1)[0] + f"/v{len(job.commands) + 1}"
            resp, sent = await self._send("PATCH", url,
                                          {"target": {"url": self.sink.url(path)}})
        elif kind == "cancel":
            resp, sent = await self._send("DELETE", url)
        else:
            resp, sent = await self._send("POST", f"{url}/{kind}")
            run_id = resp.json().get("run_id") if kind == "run" else None
        job.commands.append(Command(kind, sent, now_ms(), path=path, run_id=run_id))  # type: ignore[arg-type]
        if kind in ("cancel", "pause", "resume"):
            self.state[job.job_id] = {"cancel": "cancelled", "pause": "paused",
                                      "resume": "active"}[kind]

    # -- the run -----------------------------------------------------------------------------
    async def drive(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))
            if self.rng.random() < 0.45 or not self.jobs:
                job = await self.create()
                if self.rng.random() < 0.25:
                    await self.command(job)  # right after the 202: read-your-writes
            else:
                await self.command(self.rng.choice(self.jobs))

    async def nemesis(self, nemesis: Nemesis, deadline: float) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(4, 9))
            if time.monotonic() >= deadline:
                return
            await nemesis.strike()

    async def finish(self) -> None:
        """Cancel every recurring job still running, so the expected firings have an end."""
        for job in self.jobs:
            if not job.one_shot and self.state[job.job_id] != "cancelled":
                await self.cancel(job)

    async def cancel(self, job: JobHistory) -> None:
        _, sent = await self._send("DELETE", f"/jobs/{job.job_id}")
        job.commands.append(Command("cancel", sent, now_ms()))
        self.state[job.job_id] = "cancelled"


async def run(api: httpx.AsyncClient, pg: asyncpg.Pool[Any], env: dict[str, str], seed: int,
              seconds: float = 45.0, faults: bool = True, settle: float = 20.0) -> Report:
    """One history: `seconds` of random commands (and faults), then wait and check."""
    sink = Sink()
    workload = Workload(api, sink, seed, seconds, faults)
    nemesis = Nemesis(random.Random(seed + 1), sink, env["DUETIME_REDIS_URL"])
    sink.status_for = nemesis.status_for
    await sink.start()
    events = Events(kafka_settings(env))
    await events.start()
    try:
        deadline = time.monotonic() + seconds
        tasks = [workload.drive(deadline)]
        if faults:
            # The nemesis rests for the last 12 s, so expired leases (10 s) come back in time.
            tasks.append(workload.nemesis(nemesis, deadline - 12))
        await asyncio.gather(*tasks)
        # Let every one-shot job come due, then end the recurring ones.
        last_once = max((h.created_ms + 16_000 for h in workload.jobs), default=0)
        await asyncio.sleep(max(0.0, (last_once - now_ms()) / 1000))
        await workload.finish()
        report = await _settle(workload, events, nemesis, pg, settle)
    finally:
        await events.stop()
        await sink.stop()
    return report


def _first_attempt_fails(hit: SinkHit) -> bool:
    return "/fail1/" in hit.path and hit.headers.get("X-Duetime-Attempt") == "1"


async def _settle(workload: Workload, events: Events, nemesis: Nemesis, pg: asyncpg.Pool[Any],
                  settle: float) -> Report:
    """Check repeatedly until everything the model requires has arrived, or `settle` passed."""
    deadline = time.monotonic() + settle
    while True:
        try:
            report = await _check(workload, events, nemesis, pg)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await asyncio.sleep(1.0)  # the nemesis restarted Postgres: the pool reconnects
            continue
        if report.ok or time.monotonic() >= deadline:
            return report
        await asyncio.sleep(1.0)


async def _check(workload: Workload, events: Events, nemesis: Nemesis,
                 pg: asyncpg.Pool[Any]) -> Report:
    ids = [h.job_id for h in workload.jobs]
    rows = await pg.fetch("SELECT job_id, state, created_at FROM jobs WHERE job_id = ANY($1)", ids)
    stored = {r["job_id"]: r for r in rows}
    runs = await pg.fetch("SELECT job_id, run_id, status, scheduled_at, finished_at FROM job_runs "
                          "WHERE job_id = ANY($1)", ids)
    run_status = {(r["job_id"], r["run_id"]): r["status"] for r in runs}
    cancelled = _cancelled_runs(runs)
    hits: dict[str, list[Hit]] = {}
    for sink_hit in list(workload.sink.hits):
        if sink_hit.path.startswith(workload.base):
            hit = Hit.from_headers(sink_hit.path, sink_hit.headers, sink_hit.received_at)
            hits.setdefault(hit.job_id, []).append(hit)
    until = now_ms()
    report = Report(workload.seed, workload.jobs, nemesis.faults, {}, hits)
    for job in workload.jobs:
        row = stored.get(job.job_id)
        if row is not None:
            job.created_ms = round(row["created_at"].timestamp() * 1000)
        order = events.order(job.job_id)
        job.applied_ms = order[0] if order else None
        applied = order[1:]
        for cmd, at in zip(job.commands, applied, strict=False):
            cmd.applied_ms = at
        if len(applied) < len(job.commands) or row is None:
            report.unapplied.append(job.job_id)
        expectation = expect(job, nemesis.firing_windows(), until)
        job_hits = hits.get(job.job_id, [])
        report.verdicts[job.job_id] = check(job, expectation, job_hits,
                                            cancelled.get(job.job_id))
        got = row["state"] if row is not None else "missing"
        if got not in expectation.final_states:
            report.wrong_state[job.job_id] = (sorted(expectation.final_states)[0], got)
        # A run whose last call the sink answered 200 must be recorded as succeeded, unless
        # the executor that made the call was killed and a cancel came before a retry could,
        # or a cancel sent before the call got there aborted it before the answer was read.
        answered = {h.run_id: h.received_ms for h in job_hits
                    if nemesis.last_answer.get(h.run_id) == 200}
        kills = nemesis.executor_kills()
        missing = sorted(r for r, at in answered.items()
                         if run_status.get((job.job_id, r)) != "succeeded"
                         and not lost_with_executor(job, at, run_status.get((job.job_id, r)),
                                                    kills)
                         and not aborted_by_cancel(job, at, run_status.get((job.job_id, r))))
        if missing:
            report.unrecorded[job.job_id] = missing
    return report


def _cancelled_runs(runs: list[asyncpg.Record]) -> dict[str, dict[int, int]]:
    """Per job: its runs recorded cancelled, scheduled ms -> when that was judged (ms)."""
    cancelled: dict[str, dict[int, int]] = {}
    for r in runs:
        if r["status"] == "cancelled" and r["finished_at"] is not None:
            cancelled.setdefault(r["job_id"], {})[_ms(r["scheduled_at"])] = _ms(r["finished_at"])
    return cancelled


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def default_seconds() -> float:
    return float(os.environ.get("DUETIME_MODEL_SECONDS", "45"))

