"""Which offsets may be committed while many runs of one partition are in flight at once.

A partition's committable offset is the lowest one still running: committing past work in
flight would lose it on a crash (the faust-streaming #606 bug).
"""

from __future__ import annotations

from aiokafka import TopicPartition


class OffsetTracker:
    def __init__(self) -> None:
        self._running: dict[TopicPartition, set[int]] = {}
        self._next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        self._running.setdefault(tp, set()).add(offset)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)

    def finished(self, tp: TopicPartition, offset: int) -> None:
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
        self._committed.update(offsets)

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._running.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
