from __future__ import annotations

from aiokafka import TopicPartition

from executor.offsets import OffsetTracker

TP = TopicPartition("t", 0)


def test_never_commits_past_work_in_flight() -> None:
    t = OffsetTracker()
    for off in (10, 11, 12):
        t.started(TP, off)
    t.finished(TP, 11)
    t.finished(TP, 12)
    assert t.committable() == {TP: 10}
    t.finished(TP, 10)
    assert t.committable() == {TP: 13}
    t.committed({TP: 13})
    assert t.committable() == {}


def test_revoked_partitions_are_forgotten() -> None:
    t = OffsetTracker()
    t.started(TP, 5)
    t.forget({TP})
    assert t.committable() == {} and t.in_flight() == 0
