"""The due-set's Lua scripts against real Redis (each test uses its own key prefix)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from duetime.due_set import MANUAL, DueSet, Entry, Load

FAR = 4_000_000_000_000  # a due time (ms) later than any clock reading of the tests
TEMPLATE = {"tenant": "t", "target": {"type": "http", "url": "http://x/y"}, "retry": {}}


@pytest.fixture
def due(redis: Redis, due_prefix: str) -> DueSet:
    return DueSet(redis, shards=1, prefix=due_prefix)


async def test_pop_moves_due_entries_to_inflight_in_priority_order(due: DueSet) -> None:
    low, high = Entry("a", 1, 1000, 1, 1), Entry("b", 1, 1000, 1, 8)
    later = Entry("c", 1, 5000, 1, 5)
    for e in (low, high, later):
        await due.load(e.job_id, 1, "active", TEMPLATE, [e])
    popped = await due.pop_due(0, now_ms=2000, until_ms=2000, limit=10)
    assert [p.entry for p in popped] == [high, low]
    assert all(p.verdict == "run" and p.spec == TEMPLATE for p in popped)
    assert (await due.pop_due_all(2000, 2000, 10))[1] == 5000  # the next entry still waiting
    assert (await due.sizes())["inflight"] == 2
    await due.ack_inflight(0, [p.member for p in popped])
    assert (await due.sizes())["inflight"] == 0


async def test_stale_cancelled_and_paused_entries_are_dropped(due: DueSet) -> None:
    old = Entry("a", 1, 1000, 1, 5)
    await due.load("a", 1, "active", TEMPLATE, [old])
    await due.load("a", 2, "active", TEMPLATE, [])  # an edit bumped the version
    await due.load("p", 1, "paused", TEMPLATE, [Entry("p", 1, 1000, 1, 5)])
    await due.load("m", 1, "paused", TEMPLATE, [Entry("m", 1, 1000, 1, 5, MANUAL)])
    await due.load("c", 1, "active", TEMPLATE, [Entry("c", 1, 1000, 1, 5)])
    await due.forget("c", 2, "cancelled")
    ghost = Entry("ghost", 1, 1000, 1, 5)
    await due.redis.zadd(due.key("due", due.shard_of("ghost")), {ghost.member(): 1000})
    verdicts = {p.entry.job_id: p.verdict for p in await due.pop_due(0, 2000, 2000, 10) if p.entry}
    assert verdicts == {"a": "stale", "p": "paused", "m": "run", "c": "stale", "ghost": "unknown"}


async def test_an_owed_entry_popped_again_runs_with_its_own_versions_template(
    due: DueSet,
) -> None:
    """Entries popped again after their executor lost its lease (ADR 0036, amended): one owed
    before the edit or pause that ended its version runs with that version's template; one
    after it, one of a cancelled job, or one whose template was not kept is dropped as before."""
    old_template = {**TEMPLATE, "target": {"type": "http", "url": "http://x/old"}}
    await due.load("e", 2, "active", TEMPLATE, [], (1, 1500), old_template)  # edited at 1500
    await due.load("p", 1, "paused", None, [], (1, 1500), TEMPLATE)  # paused at 1500
    await due.load("c", 1, "active", TEMPLATE, [], (1, 1500), TEMPLATE)
    await due.forget("c", 2, "cancelled")
    await due.load("k", 2, "active", TEMPLATE, [], (1, 1500))  # no template kept (older writer)
    owed = [Entry("e", 1, 1000, 1, 5), Entry("p", 1, 1000, 1, 5), Entry("c", 1, 1000, 1, 5),
            Entry("k", 1, 1000, 1, 5)]
    after = [Entry("e", 1, 1600, 1, 5), Entry("p", 1, 1600, 1, 5)]
    await due.redis.zadd(due.key("due", 0), {e.member(): 1700 for e in owed + after})
    popped = {(p.entry.job_id, p.entry.scheduled_ms): (p.verdict, p.spec)
              for p in await due.pop_due(0, 2000, 2000, 10) if p.entry}
    assert popped == {("e", 1000): ("run", old_template), ("p", 1000): ("run", TEMPLATE),
                      ("c", 1000): ("stale", None), ("k", 1000): ("stale", None),
                      ("e", 1600): ("stale", None), ("p", 1600): ("paused", None)}


async def test_a_dead_dispatchers_inflight_entries_go_back(due: DueSet) -> None:
    e = Entry("a", 1, 1000, 1, 5)
    await due.load("a", 1, "active", TEMPLATE, [e])
    assert len(await due.pop_due(0, 2000, 2000, 10)) == 1  # popped, never acknowledged
    assert await due.requeue_inflight(0, older_than_ms=1000, now_ms=3000) == 0  # not stale yet
    assert await due.requeue_inflight(0, older_than_ms=2500, now_ms=3000) == 1
    again = await due.pop_due(0, 3000, 3000, 10)
    assert [p.entry for p in again] == [e]


async def test_claims_leases_and_completion(due: DueSet) -> None:
    e = Entry("a", 1, 1000, 1, 5)
    assert await due.claim(e, e.member(), "x1", now_ms=0, ttl_ms=1000) == "ok"
    assert await due.claim(e, e.member(), "x2", now_ms=10, ttl_ms=1000) == "held"
    assert await due.claim(e, e.member(), "x1", now_ms=10, ttl_ms=1000) == "held"  # a duplicate
    await due.complete(e, e.next_attempt(), retry_at_ms=7000)
    assert await due.claim(e, e.member(), "x2", now_ms=20, ttl_ms=1000) == "done"
    retry = await due.pop_due(0, 7000, 7000, 10)
    assert retry[0].entry == e.next_attempt() and retry[0].verdict == "unknown"


async def test_expired_lease_is_requeued_once(due: DueSet) -> None:
    e = Entry("a", 1, 1000, 1, 5)
    await due.load("a", 1, "active", TEMPLATE, [])
    assert await due.claim(e, e.member(), "dead", now_ms=0, ttl_ms=1000) == "ok"
    await due.renew("alive", [e], expiry_ms=99_999)  # not ours: must not extend it
    assert await due.requeue_expired_leases(0, now_ms=500) == 0
    assert await due.requeue_expired_leases(0, now_ms=2000) == 1
    assert await due.requeue_expired_leases(0, now_ms=3000) == 0
    popped = await due.pop_due(0, 3000, 3000, 10)
    assert [p.entry for p in popped] == [e]
    assert await due.claim(e, e.member(), "alive", now_ms=3000, ttl_ms=1000) == "ok"


async def test_a_start_by_an_executor_that_lost_its_lease_changes_nothing(due: DueSet) -> None:
    """An executor cut off from Redis (or frozen) past its lease comes back at the due instant:
    the sweep requeued its attempt and another executor claimed it. Its start must not fire the
    instant a second time; the new holder's start fires it."""
    e = Entry("a", 1, 1000, 1, 5)
    await due.load("a", 1, "active", TEMPLATE, [])
    assert await due.claim(e, e.member(), "frozen", now_ms=0, ttl_ms=1000) == "ok"
    # Expired, not yet swept: still named the owner, but its lease is over.
    assert (await due.start(e, "allow", 1500, "frozen", e.member())).kind == "lost"
    assert await due.requeue_expired_leases(0, now_ms=2000) == 1
    assert (await due.start(e, "allow", 2100, "frozen", e.member())).kind == "lost"
    assert [p.entry for p in await due.pop_due(0, 3000, 3000, 10)] == [e]
    assert await due.claim(e, e.member(), "other", now_ms=3000, ttl_ms=1000) == "ok"
    assert (await due.start(e, "allow", 3100, "frozen", e.member())).kind == "lost"
    assert await due.redis.hget(due.key("running", 0), "a") is None  # "lost" wrote nothing
    assert (await due.start(e, "allow", 3200, "other", e.member())).kind == "ok"
    # A request of a newer version taking over an unstarted older holder: the older is out.
    e2 = Entry("b", 1, 1000, 1, 5)
    newer = Entry("b", 2, 1000, 1, 5)
    await due.load("b", 2, "active", TEMPLATE, [])
    assert await due.claim(e2, e2.member(), "x1", now_ms=0, ttl_ms=10_000) == "ok"
    assert await due.claim(newer, newer.member(), "x2", now_ms=10, ttl_ms=10_000) == "ok"
    assert (await due.start(e2, "allow", 20, "x1", e2.member())).kind == "lost"
    assert (await due.start(newer, "allow", 30, "x2", newer.member())).kind == "ok"


async def test_a_start_asked_again_by_its_owner_answers_as_the_first(due: DueSet) -> None:
    """What makes retrying a start whose reply was lost safe (attempts.start_when_due)."""
    e = Entry("a", 1, 1000, 1, 5)
    await due.load("a", 1, "active", TEMPLATE, [])
    assert await due.claim(e, e.member(), "x", now_ms=0, ttl_ms=10_000) == "ok"
    assert (await due.start(e, "forbid", 100, "x", e.member())).kind == "ok"
    assert (await due.start(e, "forbid", 150, "x", e.member())).kind == "ok"  # not "overlap"


async def test_load_many_leaves_what_loads_one_after_the_other_leave(
    redis: Redis, due_prefix: str,
) -> None:
    """The writer's batch (ADR 0023) groups its loads per shard; a job loaded twice in one
    batch must end as if loaded twice in a row: the last state wins, entries only add."""
    loads = [
        Load("a", 1, "active", TEMPLATE, [Entry("a", 1, 1000, 1, 5, next_ms=2000)]),
        Load("b", 1, "completed", TEMPLATE, [Entry("b", 1, FAR, 1, 5, MANUAL)]),
        Load("c", 1, "paused", TEMPLATE, []),
        Load("d", 1, "active", {**TEMPLATE, "version": 1}, [Entry("d", 1, 1000, 1, 2)]),
        Load("a", 2, "cancelled", None, []),
        Load("c", 2, "active", TEMPLATE, [Entry("c", 2, 3000, 1, 5, next_ms=6000)], (1, 2500),
             {"v": 1}),
        # The first end of version 1 stays, and the run template it was stored with.
        Load("c", 3, "active", TEMPLATE, [], (1, 2900), {"v": 2}),
        Load("d", 2, "active", None, [Entry("d", 2, 1000, 1, 2), Entry("d", 1, 9, 1, 2)]),
        Load("b", 2, "completed", None, [Entry("b", 2, FAR + 5, 1, 5)]),
        Load("e", 1, "completed", TEMPLATE, [Entry("e", 1, FAR, 1, 5)]),
        Load("e", 2, "active", TEMPLATE, []),
    ]
    one_by_one = DueSet(redis, shards=3, prefix=f"{due_prefix}seq")
    together = DueSet(redis, shards=3, prefix=due_prefix)
    try:
        for load in loads:
            await one_by_one.load(*load)
        await together.load_many(loads)
        assert await _contents(together) == await _contents(one_by_one)
        assert (await _contents(together))["jobs"]  # not two empty sets
        assert await redis.hgetall(together.until_key("c")) == {b"1": b"2500",
                                                                 b"1:spec": b'{"v":1}'}
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{one_by_one.prefix}:*")]
        if keys:
            await redis.delete(*keys)


async def _contents(due: DueSet) -> dict[str, list[object]]:
    found: dict[str, list[object]] = {}
    for shard in range(due.shards):
        for kind in ("jobs", "specs", "nexts"):
            found.setdefault(kind, []).append(await due.redis.hgetall(due.key(kind, shard)))
        for job in ("a", "b", "c", "d", "e"):
            found.setdefault("until", []).append(await due.redis.hgetall(due.until_key(job)))
        found.setdefault("due", []).append(
            await due.redis.zrange(due.key("due", shard), 0, -1, withscores=True))
        # A job ended now (no later entry) is scored with the clock: only that it ended counts.
        ended: list[tuple[bytes, float]] = await due.redis.zrange(  # type: ignore[assignment]
            due.key("finished", shard), 0, -1, withscores=True)
        found.setdefault("finished", []).append(
            [(job, score if score >= FAR else "now") for job, score in ended])
    return found


async def test_an_entry_the_lease_sweep_put_back_is_reported_lost_only_if_its_job_ended(
    due: DueSet,
) -> None:
    """The sweep marks what it puts back: dropped because its job was cancelled (a new version:
    stale) or completed, it is "lost-<state>" with the tenant to record it by; popped to run,
    or dropped for an edit, it is as before. The mark leaves with the entry either way."""
    runs, cancelled, completed, edited = (Entry(j, 1, 1000, 1, 5) for j in "rxde")
    for e in (runs, cancelled, completed, edited):
        await due.load(e.job_id, 1, "active", TEMPLATE, [])
        assert await due.claim(e, e.member(), "dead", now_ms=0, ttl_ms=1000) == "ok"
    assert await due.requeue_expired_leases(0, now_ms=2000) == 4
    assert await due.redis.hlen(due.key("lost", 0)) == 4
    await due.load("x", 2, "cancelled", {"tenant": "t"}, [])  # what the writer's cancel does
    await due.load("d", 1, "completed", TEMPLATE, [])
    await due.load("e", 2, "active", TEMPLATE, [], (1, 500), TEMPLATE)  # edited after 1000: stale
    popped = {p.entry.job_id: (p.verdict, p.spec) for p in await due.pop_due(0, 3000, 3000, 10)
              if p.entry}
    assert popped == {"r": ("run", TEMPLATE), "x": ("lost-cancelled", {"tenant": "t"}),
                      "d": ("lost-completed", TEMPLATE), "e": ("stale", None)}
    assert await due.redis.hlen(due.key("lost", 0)) == 0
    # Put back again by a dead dispatcher, not by the sweep: a cancel now leaves no run behind.
    assert await due.requeue_inflight(0, older_than_ms=4000, now_ms=5000) == 1
    await due.load("r", 2, "cancelled", {"tenant": "t"}, [])
    assert [p.verdict for p in await due.pop_due(0, 5000, 5000, 10)] == ["stale"]
