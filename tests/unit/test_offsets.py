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


def test_work_from_before_a_revocation_cannot_touch_the_partition_again() -> None:
    t = OffsetTracker()
    t.started(TP, 5)
    before = t.generation(TP)
    t.forget({TP})
    assert t.generation(TP) == before + 1
    t.started(TP, 3)  # assigned again, redelivered from the committed offset
    t.finished(TP, 3, before)  # the old task of another offset ends: not this generation's
    assert t.committable() == {TP: 3}
    t.finished(TP, 3, t.generation(TP))
    assert t.committable() == {TP: 4}


def test_a_commit_that_completes_after_a_revocation_is_not_recorded() -> None:
    t = OffsetTracker()
    t.started(TP, 5)
    t.finished(TP, 5)
    offsets = t.committable()
    t.forget({TP})
    t.committed(offsets)
    t.started(TP, 2)
    t.finished(TP, 2)
    assert t.committable() == {TP: 3}
