"""What the dispatcher records of entries it drops at the pop: its own dispatch round against
real Redis (a due-set key prefix per test); Kafka is a recording producer."""

from __future__ import annotations

from duetime.due_set import DueSet, Entry
from duetime.run_ids import run_id_for
from duetime.timeutil import now_ms
from schemas.topics import RUNS_STATUS
from tests.integration.test_catchup_by_outage import dispatcher
from tests.integration.test_due_set import TEMPLATE, due

__all__ = ["due"]


async def test_a_lost_attempt_of_a_cancelled_job_is_recorded_cancelled_a_fresh_one_not(
    due: DueSet,
) -> None:
    """An attempt whose executor lost its lease, put back by the sweep after its job was
    cancelled, is ended `cancelled` on `duetime.runs.status`; a firing nobody claimed, dropped
    for the same cancel, is recorded nowhere."""
    at = now_ms() - 1000
    lost, fresh = Entry("lost", 1, at, 1, 5), Entry("fresh", 1, at, 1, 5)
    for e in (lost, fresh):
        await due.load(e.job_id, 1, "active", TEMPLATE, [e])
    [claimed] = [p for p in await due.pop_due(0, at, at, 10) if p.entry == lost]
    await due.ack_inflight(0, [claimed.member])
    assert await due.claim(lost, lost.member(), "dead", now_ms=at, ttl_ms=100) == "ok"
    assert await due.requeue_expired_leases(0, now_ms()) == 1
    await due.redis.zadd(due.key("due", 0), {fresh.member(): at})
    for e in (lost, fresh):
        await due.load(e.job_id, 2, "cancelled", TEMPLATE, [])
    d, producer = dispatcher(due)

    assert (await d.dispatch())[0] == 2
    [(topic, status)] = producer.sent
    assert topic == RUNS_STATUS
    assert (status["run_id"], status["tenant"], status["attempt"], status["status"],
            status["final"]) == (run_id_for("lost", at), "t", 1, "cancelled", True)
    assert "was lost" in status["error"] and "unknown" in status["error"]
