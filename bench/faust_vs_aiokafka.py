"""Benchmark: faust-streaming vs plain aiokafka for the writer's "consume a batch, persist, commit".

Produces N small JSON run-status events (~300 bytes) to a fresh 6-partition topic, then runs each
variant in its own subprocess (fresh consumer group each):

- aiokafka: ``getmany(timeout_ms=100, max_records=1000)``, ``fetch_max_wait_ms=5``, persist
  (``asyncio.sleep(0.002)`` per batch), manual ``commit()`` after every batch;
- faust: an agent over ``stream.take(1000, within=0.1)``, the same persist, faust's own commits
  (acks + background commit timer), web server disabled, ``memory://`` store.

Per variant: backlog throughput (first message to last backlog message), startup (spawn to first
message), end-to-end latency p50/p99 of a steady live stream produced while it consumes (produce
timestamp to the moment the batch is handed to user code), offsets left uncommitted when the
backlog is drained, and the RSS of the process.

Two more faust runs check its commit semantics on a 1-partition topic: (1) an exception raised
while persisting a ``take()`` batch, (2) an agent with ``concurrency=2`` and one slow message.
After each, the group's committed offset is read from Kafka.

    .venv/bin/python bench/faust_vs_aiokafka.py --bootstrap 127.0.0.1:19092 --messages 50000

faust-streaming is not a runtime dependency of duetime (ADR 0006), so `make setup` does not
install it. Install the bench's extra first: `.venv/bin/pip install -e '.[dev,faust-bench]'`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import percentile

PARTITIONS = 6
BATCH = 1000
WITHIN_S = 0.1
PERSIST_S = 0.002
LIVE_RATE = 2000
LIVE_SECONDS = 5.0
CHILD_TIMEOUT_S = 120.0
VARIANTS = ("aiokafka", "faust")


# ---------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------


def event(seq: int, phase: str, **extra: Any) -> dict[str, Any]:
    """A run-status event shaped like ``duetime.runs.status`` (~300 bytes once encoded)."""
    return {"type": "run.status", "tenant": "dev", "job_id": str(uuid.uuid4()),
            "run_id": str(uuid.uuid4()), "attempt": 1, "status": "succeeded",
            "scheduled_at": "2026-11-25T12:00:00.000000+00:00",
            "finished_at": "2026-11-25T12:00:00.123456+00:00", "executor": "executor-1",
            "http_status": 200, "duration_ms": 123, "phase": phase, "seq": seq, "ts": 0.0, **extra}


def encode(ev: dict[str, Any]) -> bytes:
    ev["ts"] = time.time()
    return orjson.dumps(ev)


def rss_mb() -> tuple[float, float]:
    """(current VmRSS, peak VmHWM) of this process in MiB.

    Not ``ru_maxrss``: Linux carries it across execve, so a child would report the parent's peak.
    """
    found: dict[str, float] = {}
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(rest.split()[0]) / 1024
    return found.get("VmRSS", math.nan), found.get("VmHWM", math.nan)


def emit(kind: str, **data: Any) -> None:
    sys.stdout.write(orjson.dumps({"kind": kind, "t": time.time(), **data}).decode() + "\n")
    sys.stdout.flush()


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    await asyncio.sleep(1.0)  # let the partition leaders settle before producing


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def produce(bootstrap: str, topic: str, events: list[dict[str, Any]], rate: float = 0.0) -> None:
    """Send events; with ``rate`` > 0 pace them evenly (stamped at send time)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    try:
        futures = []
        start = time.monotonic()
        for i, ev in enumerate(events):
            if rate > 0:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            futures.append(await producer.send(topic, encode(ev)))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# ---------------------------------------------------------------------------------------------
# child side: one variant per process
# ---------------------------------------------------------------------------------------------


@dataclass
class Probe:
    backlog: int
    live_phase: str
    live_expected: int
    spawn: float
    count: int = 0
    batches: int = 0
    commits: int = 0
    t_first: float | None = None
    t_backlog: float | None = None
    latencies: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def on_batch(self, values: list[bytes]) -> None:
        now = time.time()
        if self.t_first is None:
            self.t_first = now
        for raw in values:
            ev = orjson.loads(raw)
            if ev["phase"] == self.live_phase:
                self.latencies.append((now - ev["ts"]) * 1000)
        self.count += len(values)
        self.batches += 1
        if self.t_backlog is None and self.count >= self.backlog:
            self.t_backlog = now
            emit("backlog_done", count=self.count)
        if len(self.latencies) >= self.live_expected:
            self.done.set()

    def result(self, error: str | None) -> dict[str, Any]:
        current, peak = rss_mb()
        elapsed = (self.t_backlog - self.t_first) if self.t_backlog and self.t_first else math.nan
        return {"backlog": self.backlog, "consumed": self.count, "batches": self.batches,
                "commits": self.commits,
                "startup_s": (self.t_first - self.spawn) if self.t_first else math.nan,
                "throughput": self.backlog / elapsed if elapsed > 0 else math.nan,
                "drain_s": elapsed, "live": len(self.latencies),
                "p50_ms": percentile(self.latencies, 50), "p99_ms": percentile(self.latencies, 99),
                "max_ms": max(self.latencies) if self.latencies else math.nan,
                "rss_mb": current, "rss_peak_mb": peak, "error": error}


async def child_aiokafka(args: argparse.Namespace, probe: Probe) -> None:
    consumer = AIOKafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, group_id=args.group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=5)
    await consumer.start()
    try:
        while not probe.done.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=BATCH)
            values = [m.value for part in batches.values() for m in part]
            if not values:
                continue
            probe.on_batch(values)
            await asyncio.sleep(PERSIST_S)  # "persist"
            await consumer.commit()
            probe.commits += 1
    finally:
        await consumer.stop()


def faust_app(args: argparse.Namespace, **conf: Any) -> Any:
    import faust  # imported here so its import time counts only for the faust process

    return faust.App(args.group, broker=f"kafka://{args.bootstrap}", store="memory://",
                     web_enabled=False, consumer_auto_offset_reset="earliest", **conf)


def count_commits(app: Any, probe: Probe) -> None:
    """Count the offset commits faust actually sends (``Consumer._commit`` gets the offsets)."""
    consumer = app.consumer
    original: Callable[[Any], Awaitable[bool]] = consumer._commit

    async def counting(offsets: Any) -> bool:
        ok = await original(offsets)
        probe.commits += 1
        return ok

    consumer._commit = counting


async def run_faust(app: Any, until: Callable[[], Awaitable[object]]) -> None:
    await app.start()
    try:
        await until()
    finally:
        await app.stop()


async def child_faust(args: argparse.Namespace, probe: Probe) -> None:
    app = faust_app(args)
    topic = app.topic(args.topic, value_serializer="raw")

    async def writer(stream: Any) -> None:
        async for values in stream.take(BATCH, within=WITHIN_S):
            probe.on_batch(values)
            await asyncio.sleep(PERSIST_S)  # "persist"; faust acks after the loop body

    app.agent(topic, name="writer")(writer)
    count_commits(app, probe)
    await run_faust(app, probe.done.wait)


async def child_faust_raise(args: argparse.Namespace) -> None:
    """take(10): the first batch fails while persisting; what does faust commit?"""
    app = faust_app(args, broker_commit_interval=1.0)
    topic = app.topic(args.topic, value_serializer="raw")
    seen: list[int] = []

    async def writer(stream: Any) -> None:
        async for values in stream.take(10, within=WITHIN_S):
            seqs = [orjson.loads(v)["seq"] for v in values]
            if not seen:
                seen.extend(seqs)
                emit("raised", seqs=seqs)
                raise RuntimeError("simulated persist failure")
            seen.extend(seqs)

    app.agent(topic, name="writer")(writer)

    async def until() -> None:
        await asyncio.sleep(6.0)  # > 5 commit intervals

    await run_faust(app, until)
    emit("result", processed=seen)


async def child_faust_concurrency(args: argparse.Namespace) -> None:
    """concurrency=2, message seq 20 takes 10 s; do commits move past it while it runs?"""
    app = faust_app(args, broker_commit_interval=1.0)
    topic = app.topic(args.topic, value_serializer="raw")
    finished = asyncio.Event()

    async def worker(stream: Any) -> None:
        async for value in stream:
            ev = orjson.loads(value)
            if ev.get("slow"):
                emit("inflight", seq=ev["seq"])
                await asyncio.sleep(10.0)
                emit("slow_done", seq=ev["seq"])
                finished.set()

    app.agent(topic, name="worker", concurrency=2)(worker)
    await run_faust(app, finished.wait)
    emit("result")


def child_main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    async def run() -> None:
        if args.role == "faust-raise":
            await asyncio.wait_for(child_faust_raise(args), CHILD_TIMEOUT_S)
            return
        if args.role == "faust-concurrency":
            await asyncio.wait_for(child_faust_concurrency(args), CHILD_TIMEOUT_S)
            return
        probe = Probe(backlog=args.backlog, live_phase=f"live-{args.role}",
                      live_expected=args.live, spawn=args.spawn)
        body = child_aiokafka if args.role == "aiokafka" else child_faust
        error = None
        try:
            await asyncio.wait_for(body(args, probe), CHILD_TIMEOUT_S)
        except Exception as exc:  # report it instead of dying silently
            error = f"{type(exc).__name__}: {exc}"
        emit("result", **probe.result(error))

    asyncio.run(run())


# ---------------------------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------------------------


@dataclass
class Child:
    proc: asyncio.subprocess.Process
    stderr_path: Path

    async def next_event(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"child exited ({await self.proc.wait()}): {self.stderr_tail()}")
            if line.startswith(b"{"):
                data: dict[str, Any] = orjson.loads(line)
                return data

    def stderr_tail(self, lines: int = 15) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def finish(self) -> None:
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def spawn(role: str, args: argparse.Namespace, topic: str, group: str,
                backlog: int = 0, live: int = 0) -> tuple[Child, float]:
    stderr_path = Path(f"/tmp/faust_vs_aiokafka.{role}.{os.getpid()}.stderr")
    t0 = time.time()
    with stderr_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--role", role,
            "--bootstrap", args.bootstrap, "--topic", topic, "--group", group,
            "--backlog", str(backlog), "--live", str(live), "--spawn", repr(t0),
            stdout=asyncio.subprocess.PIPE, stderr=err)
    return Child(proc, stderr_path), t0


async def run_variant(role: str, args: argparse.Namespace, topic: str) -> dict[str, Any]:
    backlog = sum((await end_offsets(args.bootstrap, topic, PARTITIONS)).values())
    group = f"faustbench-{role}-{uuid.uuid4().hex[:8]}"
    live = int(LIVE_RATE * LIVE_SECONDS)
    child, _ = await spawn(role, args, topic, group, backlog=backlog, live=live)
    out: dict[str, Any] = {"variant": role, "group": group}
    try:
        ev = await child.next_event(CHILD_TIMEOUT_S)
        if ev["kind"] == "backlog_done":
            ends, done = await asyncio.gather(end_offsets(args.bootstrap, topic, PARTITIONS),
                                              committed(args.bootstrap, group, topic))
            out["uncommitted_at_drain"] = sum(ends.values()) - sum(done.get(p, 0) for p in ends)
            print(f"  {role}: backlog of {backlog} drained, live phase "
                  f"({LIVE_RATE}/s for {LIVE_SECONDS:g} s)", file=sys.stderr)
            live_events = [event(i, f"live-{role}") for i in range(live)]
            await produce(args.bootstrap, topic, live_events, rate=LIVE_RATE)
            ev = await child.next_event(CHILD_TIMEOUT_S)
        out.update(ev)
    except (RuntimeError, TimeoutError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    await child.finish()
    if out.get("error"):
        out["stderr"] = child.stderr_tail()
    return out


async def check_raise(args: argparse.Namespace) -> dict[str, Any]:
    topic = f"faustbench-raise-{uuid.uuid4().hex[:8]}"
    group = f"faustbench-raise-{uuid.uuid4().hex[:8]}"
    await create_topic(args.bootstrap, topic, 1)
    await produce(args.bootstrap, topic, [event(i, "bulk") for i in range(50)])
    child, _ = await spawn("faust-raise", args, topic, group)
    out: dict[str, Any] = {"check": "exception in take() body"}
    try:
        while True:
            ev = await child.next_event(60)
            if ev["kind"] == "raised":
                out["failed_batch"] = ev["seqs"]
            elif ev["kind"] == "result":
                out["processed"] = ev["processed"]
                break
    except (RuntimeError, TimeoutError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    await child.finish()
    out["committed"] = (await committed(args.bootstrap, group, topic)).get(0)
    out["log"] = [ln for ln in child.stderr_tail(400).splitlines()
                  if "simulated persist failure" in ln and "ERROR" in ln][:2]
    return out


async def check_concurrency(args: argparse.Namespace) -> dict[str, Any]:
    topic = f"faustbench-conc-{uuid.uuid4().hex[:8]}"
    group = f"faustbench-conc-{uuid.uuid4().hex[:8]}"
    await create_topic(args.bootstrap, topic, 1)
    events = [event(i, "bulk", slow=(i == 20)) for i in range(100)]
    await produce(args.bootstrap, topic, events)
    child, _ = await spawn("faust-concurrency", args, topic, group)
    out: dict[str, Any] = {"check": "concurrency=2, offset 20 in flight for 10 s"}
    try:
        while True:
            ev = await child.next_event(60)
            if ev["kind"] == "inflight":
                await asyncio.sleep(4.0)  # > 3 commit intervals, slow message still running
                out["committed_while_inflight"] = (await committed(args.bootstrap, group, topic)).get(0)
            elif ev["kind"] == "result":
                break
    except (RuntimeError, TimeoutError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    await child.finish()
    out["committed_at_end"] = (await committed(args.bootstrap, group, topic)).get(0)
    return out


def fmt(value: Any, spec: str) -> str:
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return format(value, spec)
    return "-"


def report(args: argparse.Namespace, results: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    print(f"\n### faust-streaming vs aiokafka ({args.messages} msgs backlog, {PARTITIONS} partitions, "
          f"batch {BATCH}, persist {PERSIST_S * 1000:g} ms/batch, live {LIVE_RATE}/s x {LIVE_SECONDS:g} s)\n")
    print("| variant | backlog | throughput msg/s | startup to 1st msg s | latency p50 ms | p99 ms | max ms "
          "| batches | commits | uncommitted at drain | RSS MiB (peak) | error |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['variant']} | {fmt(r.get('backlog'), 'd')} | {fmt(r.get('throughput'), ',.0f')} "
              f"| {fmt(r.get('startup_s'), '.2f')} | {fmt(r.get('p50_ms'), '.1f')} "
              f"| {fmt(r.get('p99_ms'), '.1f')} | {fmt(r.get('max_ms'), '.1f')} "
              f"| {fmt(r.get('batches'), 'd')} | {fmt(r.get('commits'), 'd')} "
              f"| {fmt(r.get('uncommitted_at_drain'), 'd')} | {fmt(r.get('rss_mb'), '.0f')} "
              f"({fmt(r.get('rss_peak_mb'), '.0f')}) | {r.get('error') or ''} |")
    print("\n*uncommitted at drain*: end offsets minus the group's committed offsets, read from Kafka as "
          "soon as the child reports the backlog drained (for aiokafka at most the batch being persisted "
          "at that moment). Latency: produce timestamp to the batch being handed to user code.")
    for r in results:
        if r.get("stderr"):
            print(f"\n{r['variant']} stderr (tail):\n```\n{r['stderr']}\n```")
    if checks:
        print("\n| faust commit check | result |\n|---|---|")
    for c in checks:
        if "failed_batch" in c:
            failed = c["failed_batch"]
            redone = sorted(set(failed) & set(c.get("processed", [])[len(failed):]))
            lost = c.get("committed") is not None and c["committed"] > min(failed)
            after = len(c.get("processed", [])) - len(failed)
            print(f"| {c['check']} | batch seqs {failed[0]}..{failed[-1]} raised; retried later: "
                  f"{'yes' if redone else 'no'}; processed after it: {after}"
                  f"; committed offset {c.get('committed')} -> failed batch "
                  f"{'committed past (lost)' if lost else 'not committed'} {c.get('error') or ''} |")
            for ln in c.get("log", []):
                print(f"|  | log: `{ln[:200]}` |")
        else:
            cw = c.get("committed_while_inflight")
            print(f"| {c['check']} | committed offset while offset 20 still running: {cw} "
                  f"({'PAST in-flight work' if cw is not None and cw > 20 else 'not past'}); "
                  f"at end: {c.get('committed_at_end')} {c.get('error') or ''} |")
    conclude(results, checks)


def conclude(results: list[dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    by = {r["variant"]: r for r in results}
    a, f = by.get("aiokafka", {}), by.get("faust", {})
    print("\n**Conclusion.**", end=" ")
    if f.get("error") or a.get("error"):
        print(f"errors: aiokafka={a.get('error')!r}, faust={f.get('error')!r}.", end=" ")
    if not f.get("error") and not a.get("error"):
        print(f"plain aiokafka drained at {fmt(a.get('throughput'), ',.0f')} msg/s vs faust "
              f"{fmt(f.get('throughput'), ',.0f')}; p99 latency {fmt(a.get('p99_ms'), '.1f')} vs "
              f"{fmt(f.get('p99_ms'), '.1f')} ms; startup {fmt(a.get('startup_s'), '.2f')} vs "
              f"{fmt(f.get('startup_s'), '.2f')} s; RSS {fmt(a.get('rss_mb'), '.0f')} vs "
              f"{fmt(f.get('rss_mb'), '.0f')} MiB. faust commits on a timer "
              f"({fmt(f.get('uncommitted_at_drain'), 'd')} offsets uncommitted when its backlog was "
              f"drained vs {fmt(a.get('uncommitted_at_drain'), 'd')}).", end=" ")
    for c in checks:
        cw = c.get("committed_while_inflight")
        if cw is not None and cw > 20:
            print("With concurrency=2 faust committed past a message still in flight.", end=" ")
        if "failed_batch" in c and c.get("committed") is not None and c["committed"] > min(c["failed_batch"]):
            print("A take() batch whose persist raised was acked and committed (lost).", end=" ")
    print("Numbers come from a shared 2-core machine and are noisy.")


async def parent_main(args: argparse.Namespace) -> None:
    topic = f"faustbench-{uuid.uuid4().hex[:8]}"
    print(f"topic {topic}: creating ({PARTITIONS} partitions), producing {args.messages} events",
          file=sys.stderr)
    await create_topic(args.bootstrap, topic, PARTITIONS)
    sample = len(encode(event(0, "bulk")))
    t0 = time.monotonic()
    await produce(args.bootstrap, topic, [event(i, "bulk") for i in range(args.messages)])
    print(f"  produced in {time.monotonic() - t0:.1f} s ({sample} bytes/event)", file=sys.stderr)
    results = []
    for role in VARIANTS:
        print(f"variant {role}", file=sys.stderr)
        results.append(await run_variant(role, args, topic))
    checks = []
    if not args.skip_checks:
        print("faust commit checks", file=sys.stderr)
        checks = [await check_raise(args), await check_concurrency(args)]
    report(args, results, checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--skip-checks", action="store_true", help="skip the faust commit checks")
    # internal: the child processes
    parser.add_argument("--role", choices=[*VARIANTS, "faust-raise", "faust-concurrency"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--backlog", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--live", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--spawn", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if importlib.util.find_spec("faust") is None:
        sys.exit("faust-streaming is not installed (not a runtime dependency, ADR 0006): "
                 ".venv/bin/pip install -e '.[dev,faust-bench]'")
    if args.role:
        child_main(args)
    else:
        asyncio.run(parent_main(args))


if __name__ == "__main__":
    main()
