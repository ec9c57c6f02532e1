"""Which offsets may be committed while many runs of one partition are in flight at once.

A partition's committable offset is the lowest one still running: committing past work in
flight would lose it on a crash (the faust-streaming #606 bug). Only partitions still tracked
are ever committed: a revoked partition is forgotten, and its generation moves on so work
fetched or finished under the old assignment can no longer touch it (aiokafka refuses a whole
commit that names a partition this consumer does not own).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import Counter

log = logging.getLogger(__name__)
COMMIT_FAILURES = Counter("duetime_executor_commit_failures_total",
                          "Offset commits that failed (retried by the next commit)", ["error"])


class OffsetTracker:
    def __init__(self) -> None:
        self._running: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._generation: dict[TopicPartition, int] = {}

    def generation(self, tp: TopicPartition) -> int:
        """How many times `tp` was forgotten: compare before and after an await."""
        return self._generation.get(tp, 0)

    def started(self, tp: TopicPartition, offset: int) -> None:
        self._running.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def finished(self, tp: TopicPartition, offset: int, generation: int | None = None) -> None:
        """Mark `offset` done; ignored when `tp` was forgotten since `generation`."""
        if generation is not None and generation != self.generation(tp):
            return
        running = self._running.get(tp)
        if running is not None:
            running.discard(offset)

    def in_flight(self) -> int:
        return sum(len(s) for s in self._running.values())

    def committable(self, partitions: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Offsets to commit that moved since the last commit."""
        out: dict[TopicPartition, int] = {}
        for tp, nxt in self._next.items():
            if partitions is not None and tp not in partitions:
                continue
            running = self._running.get(tp)
            offset = min(running) if running else nxt
            if offset > self._committed.get(tp, -1):
                out[tp] = offset
        return out

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if tp in self._next:  # not forgotten while the commit was under way
                self._committed[tp] = max(offset, self._committed.get(tp, -1))

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._running.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
            self._generation[tp] = self.generation(tp) + 1


async def commit_done(consumer: AIOKafkaConsumer | None, tracker: OffsetTracker,
                      partitions: set[TopicPartition] | None = None) -> None:
    """Commit what is done, for the partitions the consumer owns (of `partitions`, or all); a
    failure is logged and counted, and the next commit covers it."""
    if consumer is None:
        return
    owned = consumer.assignment()
    offsets = tracker.committable(owned if partitions is None else partitions & owned)
    if not offsets:
        return
    try:
        await consumer.commit(offsets)
    except (KafkaError, OSError, TimeoutError) as exc:  # CommitFailedError is a KafkaError
        COMMIT_FAILURES.labels(type(exc).__name__).inc()
        log.error("commit failed", extra={"offsets": {str(tp): o for tp, o in offsets.items()},
                                          "error": repr(exc)})
        return
    tracker.committed(offsets)


class CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what is done of the partitions taken away, then forgets them."""

    def __init__(self, tracker: OffsetTracker,
                 commit: Callable[[set[TopicPartition]], Awaitable[None]]) -> None:
        self.tracker, self.commit = tracker, commit

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await self.commit(set(revoked))
        finally:
            # Even if that commit failed: a revoked partition must never be committed again,
            # or aiokafka refuses every later commit (it names a partition we do not own).
            self.tracker.forget(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None
