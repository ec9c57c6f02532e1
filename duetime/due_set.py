"""The due-set: Redis sorted sets of firings scored by due time, sharded by job.

Shared by the writer and watcher (which load entries), the dispatcher (which pops them) and
the executor (which leases, completes and requeues runs). Every multi-key change is a Lua
script in `lua/` so it is atomic; all keys of one shard share a hash tag so each shard can
live on one Redis Cluster node.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any, NamedTuple

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from duetime.catchup import Outage, merged
from duetime.run_ids import run_id_for
from duetime.script_batch import Call, ScriptBatch, run_pipelined
from duetime.timeutil import now_ms


class Flag(StrEnum):
    """What kind of firing an entry is (the last field of its member)."""

    SCHEDULED = "s"
    MANUAL = "m"  # a run-now entry: fires even while the job is paused
    MANUAL_OVERRIDE = "o"  # a run-now entry that also ignores the overlap policy


SCHEDULED, MANUAL, MANUAL_OVERRIDE = Flag.SCHEDULED, Flag.MANUAL, Flag.MANUAL_OVERRIDE


class Claim(StrEnum):
    """claim_run.lua's answer: lease taken, or why not."""

    OK = "ok"
    HELD = "held"  # someone holds an unexpired lease on this attempt
    DONE = "done"  # the attempt already ran (or was refused for good)
    LATER = "later"  # an older version's attempt started: ask again shortly
    NEXT = "next"  # an older version's attempt scheduled a retry: this request continues it


class Start(StrEnum):
    """start_run.lua's answer at the due instant."""

    OK = "ok"
    STALE = "stale"  # the job was edited since: the newer version fires this instant
    PAUSED = "paused"
    CANCELLED = "cancelled"
    OVERLAP = "overlap"  # overlap=forbid and the previous run still runs
    REPLACE = "replace"  # overlap=replace: fire, and abort the run named in `replaces`
    LOST = "lost"  # the caller's lease expired or was taken over: someone else decides it


class Load(NamedTuple):
    """A job's state to publish in the due-set, with entries to add (DueSet.load_many)."""

    job_id: str
    version: int
    state: str
    template: dict[str, Any] | None
    entries: Sequence[Entry]
    # (version, ms): the command loaded here (an edit, pause or resume) was issued at ms, so
    # that version still governs the job's instants before it (start_run.lua, ADR 0036).
    supersedes: tuple[int, int] | None = None
    # That version's run template: an instant it still owes may be popped again after this
    # load (its executor lost the lease, its dispatcher died) and must fire as that version.
    superseded_template: dict[str, Any] | None = None


@dataclass
class _ShardLoad:
    """The Redis changes of many loads into one shard, as the loads one after the other would
    leave them: the last state of each job wins; entries are only ever added."""

    states: dict[str, str] = field(default_factory=dict)
    specs: dict[str, bytes | None] = field(default_factory=dict)  # None: delete the template
    finished: dict[str, int | None] = field(default_factory=dict)  # None: not finished
    due: dict[str, int] = field(default_factory=dict)
    nexts: dict[str, int] = field(default_factory=dict)
    # job_id -> {version: ms}: each version governs the job's instants before ms (HSETNX: the
    # first command that ended a version wins, e.g. a pause over the resume after it).
    untils: dict[str, dict[int, int]] = field(default_factory=dict)
    # job_id -> {version: its run template} for the versions in `untils` (pop_due.lua).
    until_specs: dict[str, dict[int, bytes]] = field(default_factory=dict)

    def add(self, load: Load) -> None:
        job_id = load.job_id
        if load.supersedes is not None:
            version, until_ms = load.supersedes
            self.untils.setdefault(job_id, {}).setdefault(version, until_ms)
            if load.superseded_template is not None:
                self.until_specs.setdefault(job_id, {}).setdefault(
                    version, orjson.dumps(load.superseded_template))
        self.states[job_id] = f"{load.version}|{load.state}"
        if load.state == "cancelled":
            # Nothing of it runs again; only its tenant stays, to record how an attempt its
            # lost executor left `running` ended (pop_due.lua's "lost-cancelled").
            tenant = (load.template or {}).get("tenant")
            self.specs[job_id] = orjson.dumps({"tenant": tenant}) if tenant else None
        elif load.template is not None:
            self.specs[job_id] = orjson.dumps(load.template)
        if load.state in FINISHED_STATES:
            self.finished[job_id] = max([now_ms(), *(e.scheduled_ms for e in load.entries)])
        else:
            self.finished[job_id] = None
        for e in load.entries:
            self.due.setdefault(e.member(), e.scheduled_ms)  # ZADD NX: the first one stays
            if e.next_ms is not None:
                self.nexts[e.member()] = e.next_ms

    def queue(self, pipe: Pipeline, key: Callable[[str], str], ttl_s: int) -> None:
        for job_id, untils in self.untils.items():
            until_key = f"{key('until')}:{job_id}"
            for version, until_ms in untils.items():
                pipe.hsetnx(until_key, str(version), until_ms)
            for version, spec in self.until_specs.get(job_id, {}).items():
                pipe.hsetnx(until_key, f"{version}:spec", spec)
            # Needed while a request of the old version can still arrive: the redelivery window.
            pipe.expire(until_key, ttl_s)
        pipe.hset(key("jobs"), mapping=self.states)  # type: ignore[arg-type]
        kept = {job_id: spec for job_id, spec in self.specs.items() if spec is not None}
        if kept:
            pipe.hset(key("specs"), mapping=kept)  # type: ignore[arg-type]
        if dropped := [job_id for job_id, spec in self.specs.items() if spec is None]:
            pipe.hdel(key("specs"), *dropped)
        ended = {job_id: at for job_id, at in self.finished.items() if at is not None}
        if ended:
            pipe.zadd(key("finished"), ended)
        if alive := [job_id for job_id, at in self.finished.items() if at is None]:
            pipe.zrem(key("finished"), *alive)
        if self.due:
            pipe.zadd(key("due"), self.due, nx=True)
        if self.nexts:
            pipe.hset(key("nexts"), mapping=self.nexts)  # type: ignore[arg-type]


class StartVerdict(NamedTuple):
    kind: Start
    replaces: str | None = None  # the runkey to abort, for Start.REPLACE
# A heartbeat silent this long means the path was down (an outage), not busy (ADR 0011);
# the most recent outages are kept per shard.
OUTAGE_GAP_MS = 5000
KEEP_OUTAGES = 100
FINISHED_STATES = ("cancelled", "completed")
# How long a run request can still arrive after its attempt ran or its job ended
# (RedeliverySettings.run_redelivery_seconds): the done flags' lifetime and the tombstones' grace.
REDELIVERY_WINDOW_S = 6 * 3600


@dataclass(frozen=True)
class Entry:
    """One due-set member: a firing (or retry) of one job version."""

    job_id: str
    version: int
    scheduled_ms: int
    attempt: int
    priority: int
    flag: Flag = Flag.SCHEDULED
    # The job's next instant after this firing (ms), stored beside the entry so catch-up can
    # tell the newest firing of an outage (duetime/catchup.py); not part of the member.
    next_ms: int | None = field(default=None, compare=False)

    def member(self) -> str:
        # Equal scores sort by member, so the inverted priority first puts 9 before 0.
        return (
            f"{9 - self.priority}|{self.job_id}|{self.version}|{self.scheduled_ms}"
            f"|{self.attempt}|{self.flag}"
        )

    @functools.cached_property
    def run_id(self) -> str:
        # A MAC (duetime/run_ids.py): asked for by every script call and status of an attempt.
        return run_id_for(self.job_id, self.scheduled_ms)

    @property
    def runkey(self) -> str:
        # Not versioned on purpose: every version's firing at one instant is the same run (one
        # Idempotency-Key), and one lease/done flag per attempt keeps two versions from both
        # firing it. Which version may fire is decided in claim_run/start_run (ADR 0010).
        return f"{self.run_id}:{self.attempt}"

    @classmethod
    def parse(cls, member: str) -> Entry:
        inv, job_id, version, sched, attempt, flag = member.split("|")
        return cls(job_id, int(version), int(sched), int(attempt), 9 - int(inv), Flag(flag))

    def next_attempt(self) -> Entry:
        return Entry(self.job_id, self.version, self.scheduled_ms, self.attempt + 1,
                     self.priority, self.flag)


def lost_state(verdict: str) -> str | None:
    """The state (cancelled, completed) a job reached before an entry the lease sweep put back
    could run again (pop_due's verdict "lost-<state>"); None for any other verdict."""
    prefix, _, state = verdict.partition("-")
    return state if prefix == "lost" and state else None


@dataclass(frozen=True)
class Popped:
    verdict: str  # "run", or why the entry was dropped
    entry: Entry | None
    member: str
    due_ms: int
    spec: dict[str, Any] | None
    next_ms: int | None = None  # the job's next instant after this firing, when known


@dataclass(frozen=True)
class Round:
    """One dispatch round over every shard: what was popped, when the next entry is due, and
    each shard's outages (an ongoing one last, ending at the round's `now_ms`)."""

    popped: dict[int, list[Popped]]
    head: int | None
    outages: dict[int, list[Outage]]


def _script(redis: Redis, name: str) -> AsyncScript:
    text = resources.files("duetime.lua").joinpath(f"{name}.lua").read_text()
    return redis.register_script(text)


class DueSet:
    def __init__(self, redis: Redis, shards: int, prefix: str = "dt", *,
                 redelivery_window_s: int = REDELIVERY_WINDOW_S) -> None:
        self.redis = redis
        self.shards = shards
        self.prefix = prefix
        self.redelivery_window_s = redelivery_window_s
        self._pop = _script(redis, "pop_due")
        self._heartbeat = _script(redis, "heartbeat")
        self._requeue_inflight = _script(redis, "requeue_inflight")
        self._claim = _script(redis, "claim_run")
        self._complete = _script(redis, "complete_run")
        self._renew = _script(redis, "renew_leases")
        self._requeue_expired = _script(redis, "requeue_expired_leases")
        self._start = _script(redis, "start_run")
        self._trim_finished = _script(redis, "trim_finished")
        self._ack = _script(redis, "ack_inflight")
        # The executor's claims and completions made while a trip is out share the next one.
        # Start verdicts, awaited at the instant, go on a connection of their own: behind a
        # trip of a lookahead's claims (hundreds of scripts) a verdict waited for that whole
        # trip and then for its own (ADR 0058).
        self._batch = ScriptBatch(redis)
        self._verdicts = ScriptBatch(redis)

    # -- keys ---------------------------------------------------------------------------
    def shard_of(self, job_id: str) -> int:
        return zlib.crc32(job_id.encode()) % self.shards

    def key(self, kind: str, shard: int) -> str:
        return f"{self.prefix}:{kind}:{{{self.prefix}:{shard}}}"

    def done_key(self, shard: int, runkey: str) -> str:
        return f"{self.key('done', shard)}:{runkey}"

    def until_key(self, job_id: str) -> str:
        """Per job: version -> the ms before which that version's instants are owed (Load)."""
        return f"{self.key('until', self.shard_of(job_id))}:{job_id}"

    # -- loading (writer, watcher) --------------------------------------------------------
    async def load(
        self,
        job_id: str,
        version: int,
        state: str,
        template: dict[str, Any] | None,
        entries: Sequence[Entry],
        supersedes: tuple[int, int] | None = None,
        superseded_template: dict[str, Any] | None = None,
    ) -> None:
        """Publish a job's current version/state (and run template), and add its entries."""
        await self.load_many([Load(job_id, version, state, template, entries, supersedes,
                                   superseded_template)])

    async def load_many(self, loads: Sequence[Load]) -> None:
        """Publish many jobs' current version/state (and run template), and add their entries,
        in one transaction: one round trip whatever the count (the writer, per batch).

        A cancelled job loses its run template at once (nothing of it runs again; a template
        given with the cancel keeps only its tenant, see `lost_state`) and, like a
        completed one, becomes a tombstone: `trim_finished` forgets it once no run request of
        it can arrive any more (a completed job's run-now entry is due first).
        """
        if not loads:
            return
        shards: dict[int, _ShardLoad] = {}
        for load in loads:
            shards.setdefault(self.shard_of(load.job_id), _ShardLoad()).add(load)
        # One MULTI over every shard: fine on one Redis; a cluster would need one per node.
        # A few commands per shard, not per job: redis-py parses every reply in Python.
        async with self.redis.pipeline(transaction=True) as pipe:
            for shard, changes in shards.items():
                changes.queue(pipe, functools.partial(self.key, shard=shard),
                              self.redelivery_window_s)
            await pipe.execute()

    async def add_due(self, entries: Sequence[tuple[Entry, int]]) -> None:
        """Add entries due at explicit instants (retries re-created from Postgres)."""
        by_shard: dict[int, dict[str, int]] = {}
        for entry, due_ms in entries:
            by_shard.setdefault(self.shard_of(entry.job_id), {})[entry.member()] = due_ms
        for shard, members in by_shard.items():
            await self.redis.zadd(self.key("due", shard), members, nx=True)

    # -- integrity (watcher) ----------------------------------------------------------------
    def _epoch_key(self) -> str:
        return f"{self.prefix}:epoch"

    async def identity(self) -> tuple[str, bool]:
        """(the Redis server's run id, whether this due-set's epoch marker is there).

        The run id changes when Redis restarts or fails over (its AOF tail or unreplicated
        writes may be gone); the marker is gone when the data was flushed (ADR 0014).
        """
        info = await self.redis.info("server")
        present = bool(await self.redis.exists(self._epoch_key()))
        return str(info.get("run_id", "")), present

    async def mark_epoch(self, value: str) -> None:
        await self.redis.set(self._epoch_key(), value)

    async def forget(self, job_id: str, version: int, state: str) -> None:
        """Mark a job finished: its remaining entries are dropped at pop time."""
        await self.forget_many([(job_id, version, state)])

    async def forget_many(self, jobs: Sequence[tuple[str, int, str]]) -> None:
        """Mark jobs (job_id, version, state) finished, in one transaction: their remaining
        entries are dropped at pop time.

        Each stays a tombstone (so run requests already sent are refused at start) until
        `trim_finished` forgets it.
        """
        if not jobs:
            return
        at = now_ms()
        async with self.redis.pipeline(transaction=True) as pipe:
            for job_id, version, state in jobs:
                shard = self.shard_of(job_id)
                pipe.hset(self.key("jobs", shard), job_id, f"{version}|{state}")
                pipe.hdel(self.key("specs", shard), job_id)
                pipe.zadd(self.key("finished", shard), {job_id: at})
            await pipe.execute()

    async def trim_finished(self, at_ms: int, limit: int = 1000) -> int:
        """Forget jobs that ended more than the redelivery window ago; returns how many."""
        before = at_ms - self.redelivery_window_s * 1000
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.shards):
                await self._trim_finished(
                    keys=[self.key("finished", shard), self.key("jobs", shard),
                          self.key("specs", shard)],
                    args=[before, limit], client=pipe)
            return sum(int(n) for n in await pipe.execute())

    async def adopt_finished(self, at_ms: int) -> int:
        """Give every finished job without a tombstone time one (jobs that ended before
        tombstones were trimmed); done once per Redis dataset. Returns how many."""
        marker = f"{self.prefix}:finished-adopted"
        if await self.redis.exists(marker):
            return 0
        adopted = 0
        for shard in range(self.shards):
            ended: dict[str, int] = {}
            async for job_id, meta in self.redis.hscan_iter(self.key("jobs", shard), count=1000):
                if _text(meta).rpartition("|")[2] in FINISHED_STATES:
                    ended[_text(job_id)] = at_ms
                if len(ended) >= 1000:
                    adopted += await self._add_finished(shard, ended)
                    ended = {}
            adopted += await self._add_finished(shard, ended)
        await self.redis.set(marker, at_ms)
        return adopted

    async def _add_finished(self, shard: int, ended: dict[str, int]) -> int:
        if not ended:
            return 0
        return int(await self.redis.zadd(self.key("finished", shard), ended, nx=True) or 0)

    async def memory(self) -> tuple[int, int]:
        """Redis's used memory and its `maxmemory` (0: unlimited), in bytes."""
        info = await self.redis.info("memory")
        return int(info["used_memory"]), int(info.get("maxmemory", 0))

    # -- dispatching ----------------------------------------------------------------------
    def _pop_keys(self, shard: int) -> list[str]:
        # `until` is the prefix of the shard's per-job `until` hashes (until_key), read for an
        # older version's or a paused job's entry only; `lost` marks what the lease sweep put
        # back (requeue_expired_leases).
        return [self.key("due", shard), self.key("inflight", shard), self.key("jobs", shard),
                self.key("specs", shard), self.key("nexts", shard), self.key("until", shard),
                self.key("lost", shard)]

    async def pop_due(self, shard: int, now_ms: int, until_ms: int, limit: int) -> list[Popped]:
        raw = await self._pop(keys=self._pop_keys(shard), args=[now_ms, until_ms, limit])
        return _parse_popped(raw)[0]

    async def pop_due_all(self, now_ms: int, until_ms: int,
                          limit: int) -> tuple[dict[int, list[Popped]], int | None]:
        """Pop every shard in one round trip; also returns when the next entry is due."""
        done = await self.dispatch_round(now_ms, until_ms, limit, None)
        return done.popped, done.head

    async def dispatch_round(self, now_ms: int, until_ms: int, limit: int, alive_ms: int | None,
                             gap_ms: int = OUTAGE_GAP_MS,
                             acks: Mapping[int, Sequence[str]] | None = None) -> Round:
        """Acknowledge `acks` (see `ack_inflight`), beat the dispatching path's heartbeat (if
        `alive_ms`: everything it sent before then was acknowledged), then pop every shard, in
        one round trip (ack_inflight.lua, heartbeat.lua, pop_due.lua).

        A silence of the heartbeat longer than `gap_ms` is an outage; one still going on (no
        proof of life for `gap_ms` by `now_ms`) is returned last, ending at `now_ms`. An error
        of any of these calls is raised (after all of them ran).
        """
        acks = {shard: members for shard, members in (acks or {}).items() if members}
        calls: list[Call] = [(self._ack, self._ack_keys(shard), list(members))
                             for shard, members in acks.items()]
        for shard in range(self.shards):
            calls.append((self._heartbeat, self._beat_keys("alive", shard),
                          ["" if alive_ms is None else alive_ms, gap_ms, 0, KEEP_OUTAGES]))
            calls.append((self._pop, self._pop_keys(shard), [now_ms, until_ms, limit]))
        results = await run_pipelined(self.redis, calls)
        for result in results:
            if isinstance(result, Exception):
                raise result
        results = results[len(acks):]
        popped: dict[int, list[Popped]] = {}
        outages: dict[int, list[Outage]] = {}
        heads: list[int] = []
        for shard in range(self.shards):
            outages[shard] = _parse_outages(results[2 * shard], now_ms, gap_ms)
            entries, head = _parse_popped(results[2 * shard + 1])
            if entries:
                popped[shard] = entries
            if head is not None:
                heads.append(head)
        return Round(popped, min(heads) if heads else None, outages)

    async def loaded(self, alive_ms: int, ahead_ms: int,
                     gap_ms: int = OUTAGE_GAP_MS) -> dict[int, list[Outage]]:
        """The watcher's heartbeat: it loaded everything due before `alive_ms + ahead_ms`. After
        a silence, firings it could not load in time (due after the last load's horizon) fell
        into an outage. Returns every shard's outages as a loader judges by them (see
        `outages_many`)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.shards):
                await self._heartbeat(keys=self._beat_keys("loaded", shard),
                                      args=[alive_ms, gap_ms, ahead_ms, KEEP_OUTAGES],
                                      client=pipe)
                await self._heartbeat(keys=self._beat_keys("alive", shard),
                                      args=["", gap_ms, 0, KEEP_OUTAGES], client=pipe)
            results = await pipe.execute()
        return {shard: merged(_parse_outages(results[2 * shard], None, gap_ms)
                              + _parse_outages(results[2 * shard + 1], None, gap_ms))
                for shard in range(self.shards)}

    async def outages(self, shard: int, *, dispatching_only: bool = False) -> list[Outage]:
        """The outages recorded for a shard (closed ones only); see `outages_many`."""
        return (await self.outages_many([shard], dispatching_only=dispatching_only))[shard]

    async def outages_many(self, shards: Iterable[int], *,
                           dispatching_only: bool = False) -> dict[int, list[Outage]]:
        """The outages recorded for each of `shards` (closed ones only), in one round trip.

        A loader (writer, watcher) judges a firing by both paths' outages, merged: one it loads
        late was missed if either could not make it in time. The dispatcher judges what it pops
        by its own path's only (`dispatching_only`): an entry loaded in time and popped while
        the dispatching path was alive was not missed, whatever the watcher did meanwhile.
        """
        wanted = sorted(set(shards))
        if not wanted:
            return {}
        paths = ("alive",) if dispatching_only else ("alive", "loaded")
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in wanted:
                for path in paths:
                    await self._heartbeat(keys=self._beat_keys(path, shard),
                                          args=["", OUTAGE_GAP_MS, 0, KEEP_OUTAGES], client=pipe)
            results = await pipe.execute()
        n = len(paths)
        return {shard: merged(o for raw in results[i * n:(i + 1) * n]
                              for o in _parse_outages(raw, None, OUTAGE_GAP_MS))
                for i, shard in enumerate(wanted)}

    def _beat_keys(self, path: str, shard: int) -> list[str]:
        # Each path keeps its own outages (ADR 0011): the dispatcher judges by its own only.
        # The dispatching path's stay where they always were.
        outages = "outages" if path == "alive" else f"outages:{path}"
        return [self.key(path, shard), self.key(outages, shard)]

    def _ack_keys(self, shard: int) -> list[str]:
        return [self.key("inflight", shard), self.key("nexts", shard)]

    async def ack_inflight(self, shard: int, members: Sequence[str]) -> None:
        """Entries whose run requests Kafka holds leave the in-flight set (ack_inflight.lua);
        the dispatcher passes them to its next `dispatch_round` instead, in the same trip."""
        if members:
            await self._ack(keys=self._ack_keys(shard), args=list(members))

    async def requeue_inflight(self, shard: int, older_than_ms: int, now_ms: int) -> int:
        """Entries a dead dispatcher popped go back with their original due score
        (requeue_inflight.lua), so catch-up still judges them by their instant."""
        return int(await self._requeue_inflight(
            keys=[self.key("inflight", shard), self.key("due", shard)],
            args=[older_than_ms, now_ms, 1000],
        ))

    # -- executing ------------------------------------------------------------------------
    async def claim(self, entry: Entry, member: str, executor_id: str, now_ms: int,
                    ttl_ms: int, later_ms: int = 250) -> Claim:
        """Lease one attempt: "ok", or why not ("done", "held", "next", "later"; claim_run.lua).

        Leases and done flags are per run and attempt, not per version, so two versions never
        both fire one instant; a newer version's request takes over, continues or waits.
        """
        shard = self.shard_of(entry.job_id)
        return Claim(_text(await self._batch.call(
            self._claim,
            [self.key("leases", shard), self.key("owners", shard),
             self.done_key(shard, entry.runkey), self.key("due", shard),
             self.key("running", shard)],
            [entry.runkey, executor_id, now_ms, ttl_ms, member, entry.version,
             entry.job_id, entry.next_attempt().member(), later_ms],
        )))

    async def complete(self, entry: Entry, retry: Entry | None, retry_at_ms: int,
                       done_ttl_s: int = 0) -> None:
        """Finish an attempt (see complete_run.lua).

        Its done flag refuses a redelivered request for `done_ttl_s` seconds; 0 (the default)
        means this due-set's redelivery window, which bounds how many flags Redis holds.
        """
        shard = self.shard_of(entry.job_id)
        await self._batch.call(
            self._complete,
            [self.key("leases", shard), self.key("owners", shard),
             self.done_key(shard, entry.runkey), self.key("due", shard),
             self.key("running", shard)],
            [entry.runkey, done_ttl_s or self.redelivery_window_s,
             retry.member() if retry else "", retry_at_ms, entry.job_id, entry.version],
        )

    async def start(self, entry: Entry, overlap: str, now_ms: int, executor_id: str = "",
                    member: str = "") -> StartVerdict:
        """Check version/state and the overlap policy at the due instant (see start_run.lua).

        An instant owed before the edit or pause that ended its version fires however late its
        request is judged (ADR 0036). A "stale" or "paused" verdict has released the lease of
        `executor_id` on `member`: the attempt is not used up and must not be completed.
        "lost" means the lease on it is no longer `executor_id`'s (expired, or taken over):
        nothing may be done for it. Safe to call again after a failure: the owner's second call
        answers as its first did (but "replace" then reads "ok", its old run already flagged
        or not: see `start_when_due`).
        """
        shard = self.shard_of(entry.job_id)
        raw = _text(await self._verdicts.run_first(
            self._start,
            [self.key("jobs", shard), self.key("running", shard), self.key("leases", shard),
             self.key("owners", shard), self.until_key(entry.job_id)],
            [entry.job_id, entry.version, entry.flag, entry.runkey, overlap, now_ms,
             f"{executor_id}|{member or entry.member()}", entry.scheduled_ms],
        ))
        kind, _, replaces = raw.partition(":")
        return StartVerdict(Start(kind), replaces or None)

    async def taken(self, runs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (job_id, runkey): whether an executor holds its lease or finished it (its
        done flag), whatever Postgres says yet; one round trip for all."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id, runkey in runs:
                shard = self.shard_of(job_id)
                pipe.zscore(self.key("leases", shard), runkey)
                pipe.exists(self.done_key(shard, runkey))
            found = await pipe.execute()
        return [found[2 * i] is not None or bool(found[2 * i + 1]) for i in range(len(runs))]

    async def flag_cancelled(self, job_id: str, version: int) -> None:
        """Tell executors still running a call of the job (before `version`) to abort it;
        needed no longer than a run request can still arrive."""
        await self.redis.set(self.cancel_key(job_id), version, ex=self.redelivery_window_s)

    async def flag_replaced(self, runkey: str, reason: str, ttl_s: int = 3600) -> None:
        """Tell the executor running `runkey` to abort it (a newer run replaces it)."""
        await self.redis.set(self.abort_key(runkey), reason, ex=ttl_s)

    async def abort_flags(self, runs: Sequence[tuple[str, str]]) -> list[tuple[int | None, bool]]:
        """For each (job_id, runkey): the job's cancel version (None if not cancelled) and
        whether the run was replaced; one round trip for all."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id, runkey in runs:
                pipe.get(self.cancel_key(job_id))
                pipe.get(self.abort_key(runkey))
            flags = await pipe.execute()
        return [(None if flags[2 * i] is None else int(flags[2 * i]), flags[2 * i + 1] is not None)
                for i in range(len(runs))]

    async def server_time_ms(self) -> float:
        """The Redis server's clock (`TIME`): the reference for due and leases (ADR 0012)."""
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) / 1000

    def abort_key(self, runkey: str) -> str:
        return f"{self.prefix}:abort:{runkey}"

    def cancel_key(self, job_id: str) -> str:
        return f"{self.prefix}:cancel:{job_id}"

    async def renew(self, executor_id: str, runs: Sequence[Entry], expiry_ms: int) -> None:
        by_shard: dict[int, list[str]] = {}
        for entry in runs:
            by_shard.setdefault(self.shard_of(entry.job_id), []).append(entry.runkey)
        for shard, keys in by_shard.items():
            await self._renew(keys=[self.key("leases", shard), self.key("owners", shard)],
                              args=[executor_id, expiry_ms, *keys])

    async def requeue_expired_leases(self, shard: int, now_ms: int) -> int:
        """Put back the entries whose executor stopped renewing their lease, marked lost: if
        the job ends before one runs again, pop_due drops it as `lost_state` tells."""
        return int(await self._requeue_expired(
            keys=[self.key("leases", shard), self.key("owners", shard), self.key("due", shard),
                  self.key("lost", shard)],
            args=[now_ms, 1000],
        ))

    async def sizes(self) -> dict[str, int]:
        totals = {"due": 0, "inflight": 0, "leases": 0}
        for shard in range(self.shards):
            for kind in totals:
                totals[kind] += int(await self.redis.zcard(self.key(kind, shard)))
        return totals


def _parse_popped(raw: list[Any]) -> tuple[list[Popped], int | None]:
    out: list[Popped] = []
    head: int | None = None
    for i in range(0, len(raw), 5):
        verdict, member, score, spec, nxt = (_text(x) for x in raw[i:i + 5])
        if verdict == "next":
            head = int(float(score)) if score else None
            continue
        try:
            entry: Entry | None = Entry.parse(member)
        except ValueError:
            entry = None
        out.append(Popped(verdict, entry, member, int(float(score)),
                          orjson.loads(spec) if spec else None, int(nxt) if nxt else None))
    return out, head


def _parse_outages(raw: list[Any], now_ms: int | None, gap_ms: int) -> list[Outage]:
    """heartbeat.lua's answer; with `now_ms`, a silence since the last beat longer than
    `gap_ms` is an outage still going on (until `now_ms`, for now)."""
    *closed, last = (_text(x) for x in raw)
    out = [Outage(int(s), int(e)) for s, e in (o.split("|") for o in closed)]
    if now_ms is not None and last and now_ms - int(last) > gap_ms:
        out.append(Outage(int(last), now_ms))
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
