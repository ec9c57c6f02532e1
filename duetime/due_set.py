"""The due-set: Redis sorted sets of firings scored by due time, sharded by job.

Shared by the writer and watcher (which load entries), the dispatcher (which pops them) and
the executor (which leases, completes and requeues runs). Every multi-key change is a Lua
script in `lua/` so it is atomic; all keys of one shard share a hash tag so each shard can
live on one Redis Cluster node.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from duetime.run_ids import run_id_for

SCHEDULED = "s"
MANUAL = "m"  # a run-now entry: fires even while the job is paused
MANUAL_OVERRIDE = "o"  # a run-now entry that also ignores the overlap policy


@dataclass(frozen=True)
class Entry:
    """One due-set member: a firing (or retry) of one job version."""

    job_id: str
    version: int
    scheduled_ms: int
    attempt: int
    priority: int
    flag: str = SCHEDULED

    def member(self) -> str:
        # Equal scores sort by member, so the inverted priority first puts 9 before 0.
        return (
            f"{9 - self.priority}|{self.job_id}|{self.version}|{self.scheduled_ms}"
            f"|{self.attempt}|{self.flag}"
        )

    @property
    def run_id(self) -> str:
        return run_id_for(self.job_id, self.scheduled_ms)

    @property
    def runkey(self) -> str:
        return f"{self.run_id}:{self.attempt}"

    @classmethod
    def parse(cls, member: str) -> Entry:
        inv, job_id, version, sched, attempt, flag = member.split("|")
        return cls(job_id, int(version), int(sched), int(attempt), 9 - int(inv), flag)

    def next_attempt(self) -> Entry:
        return Entry(self.job_id, self.version, self.scheduled_ms, self.attempt + 1,
                     self.priority, self.flag)


@dataclass(frozen=True)
class Popped:
    verdict: str  # "run", or why the entry was dropped
    entry: Entry | None
    member: str
    due_ms: int
    spec: dict[str, Any] | None


def _script(redis: Redis, name: str) -> AsyncScript:
    text = resources.files("duetime.lua").joinpath(f"{name}.lua").read_text()
    return redis.register_script(text)


class DueSet:
    def __init__(self, redis: Redis, shards: int, prefix: str = "dt") -> None:
        self.redis = redis
        self.shards = shards
        self.prefix = prefix
        self._pop = _script(redis, "pop_due")
        self._requeue_inflight = _script(redis, "requeue_inflight")
        self._claim = _script(redis, "claim_run")
        self._complete = _script(redis, "complete_run")
        self._renew = _script(redis, "renew_leases")
        self._requeue_expired = _script(redis, "requeue_expired_leases")
        self._start = _script(redis, "start_run")

    # -- keys ---------------------------------------------------------------------------
    def shard_of(self, job_id: str) -> int:
        return zlib.crc32(job_id.encode()) % self.shards

    def key(self, kind: str, shard: int) -> str:
        return f"{self.prefix}:{kind}:{{{self.prefix}:{shard}}}"

    def done_key(self, shard: int, runkey: str) -> str:
        return f"{self.key('done', shard)}:{runkey}"

    # -- loading (writer, watcher) --------------------------------------------------------
    async def load(
        self,
        job_id: str,
        version: int,
        state: str,
        template: dict[str, Any] | None,
        entries: Sequence[Entry],
    ) -> None:
        """Publish a job's current version/state (and run template), and add its entries."""
        shard = self.shard_of(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key("jobs", shard), job_id, f"{version}|{state}")
            if template is not None:
                pipe.hset(self.key("specs", shard), job_id, orjson.dumps(template))
            if entries:
                pipe.zadd(
                    self.key("due", shard),
                    {e.member(): e.scheduled_ms for e in entries},
                    nx=True,
                )
            await pipe.execute()

    async def forget(self, job_id: str, version: int, state: str) -> None:
        """Mark a job finished: its remaining entries are dropped at pop time."""
        shard = self.shard_of(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.key("jobs", shard), job_id, f"{version}|{state}")
            pipe.hdel(self.key("specs", shard), job_id)
            await pipe.execute()

    # -- dispatching ----------------------------------------------------------------------
    def _pop_keys(self, shard: int) -> list[str]:
        return [self.key("due", shard), self.key("inflight", shard), self.key("jobs", shard),
                self.key("specs", shard)]

    async def pop_due(self, shard: int, now_ms: int, until_ms: int, limit: int) -> list[Popped]:
        raw = await self._pop(keys=self._pop_keys(shard), args=[now_ms, until_ms, limit])
        return _parse_popped(raw)[0]

    async def pop_due_all(self, now_ms: int, until_ms: int,
                          limit: int) -> tuple[dict[int, list[Popped]], int | None]:
        """Pop every shard in one round trip; also returns when the next entry is due."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in range(self.shards):
                await self._pop(keys=self._pop_keys(shard), args=[now_ms, until_ms, limit],
                                client=pipe)
            results = await pipe.execute()
        popped: dict[int, list[Popped]] = {}
        heads: list[int] = []
        for shard, raw in enumerate(results):
            entries, head = _parse_popped(raw)
            if entries:
                popped[shard] = entries
            if head is not None:
                heads.append(head)
        return popped, min(heads) if heads else None

    async def ack_inflight(self, shard: int, members: Sequence[str]) -> None:
        if members:
            await self.redis.zrem(self.key("inflight", shard), *members)

    async def requeue_inflight(self, shard: int, older_than_ms: int, now_ms: int) -> int:
        return int(await self._requeue_inflight(
            keys=[self.key("inflight", shard), self.key("due", shard)],
            args=[older_than_ms, now_ms, 1000],
        ))

    # -- executing ------------------------------------------------------------------------
    async def claim(self, entry: Entry, member: str, executor_id: str, now_ms: int,
                    ttl_ms: int) -> str:
        shard = self.shard_of(entry.job_id)
        return _text(await self._claim(
            keys=[self.key("leases", shard), self.key("owners", shard),
                  self.done_key(shard, entry.runkey)],
            args=[entry.runkey, executor_id, now_ms, ttl_ms, member],
        ))

    async def complete(self, entry: Entry, retry: Entry | None, retry_at_ms: int,
                       done_ttl_s: int = 7 * 86400) -> None:
        shard = self.shard_of(entry.job_id)
        await self._complete(
            keys=[self.key("leases", shard), self.key("owners", shard),
                  self.done_key(shard, entry.runkey), self.key("due", shard),
                  self.key("running", shard)],
            args=[entry.runkey, done_ttl_s, retry.member() if retry else "", retry_at_ms,
                  entry.job_id],
        )

    async def start(self, entry: Entry, overlap: str, now_ms: int) -> str:
        """Check version/state and the overlap policy at the due instant (see start_run.lua)."""
        shard = self.shard_of(entry.job_id)
        return _text(await self._start(
            keys=[self.key("jobs", shard), self.key("running", shard), self.key("leases", shard)],
            args=[entry.job_id, entry.version, entry.flag, entry.runkey, overlap, now_ms],
        ))

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
        return int(await self._requeue_expired(
            keys=[self.key("leases", shard), self.key("owners", shard), self.key("due", shard)],
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
    for i in range(0, len(raw), 4):
        verdict, member, score, spec = (_text(x) for x in raw[i:i + 4])
        if verdict == "next":
            head = int(float(score)) if score else None
            continue
        try:
            entry: Entry | None = Entry.parse(member)
        except ValueError:
            entry = None
        out.append(Popped(verdict, entry, member, int(float(score)),
                          orjson.loads(spec) if spec else None))
    return out, head


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
