"""Script calls that share a round trip (duetime/script_batch.py, ADR 0024 and 0055), against
real Redis.

Sharing the trip must change nothing else: every call keeps its own verdict and its own
error, a script Redis forgot is loaded again, and the dispatcher's acknowledgements still
empty the in-flight set (in its next round, or when it drains).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from duetime import script_batch
from duetime.due_set import DueSet, Entry
from duetime.script_batch import ScriptBatch
from duetime.timeutil import now_ms
from tests.integration.test_catchup_by_outage import dispatcher
from tests.integration.test_due_set import TEMPLATE, due

__all__ = ["due"]


class Trips:
    """The round trips the script batches make: how many calls each one carried."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sizes: list[int] = []
        exchange = script_batch._exchange

        async def counted(connection: Any, calls: Any) -> list[Any]:
            self.sizes.append(len(calls))
            return await exchange(connection, calls)

        monkeypatch.setattr(script_batch, "_exchange", counted)


async def _scripts_loaded(due: DueSet) -> None:
    """Counting trips needs scripts Redis knows: another test (or a fresh Redis) may have left
    them out, and a reload is a trip of its own (that case: the forgotten-script test)."""
    for script in (due._claim, due._start, due._complete):
        await due.redis.script_load(script.script)


def _entries(n: int) -> list[Entry]:
    return [Entry(f"job-{i}", 1, now_ms(), 1, 5) for i in range(n)]


async def test_claims_starts_and_completes_made_together_share_one_round_trip(
    due: DueSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries = _entries(40)
    for e in entries:
        await due.load(e.job_id, 1, "active", TEMPLATE, [])
    await _scripts_loaded(due)
    trips = Trips(monkeypatch)

    claims = await asyncio.gather(*(due.claim(e, e.member(), "ex-1", now_ms(), 10_000)
                                    for e in entries))
    assert claims == ["ok"] * 40 and trips.sizes == [40]
    others = await asyncio.gather(*(due.claim(e, e.member(), "ex-2", now_ms(), 10_000)
                                    for e in entries))
    assert others == ["held"] * 40  # each call judged on its own, after the first batch
    starts = await asyncio.gather(*(due.start(e, "allow", now_ms(), "ex-1", e.member())
                                    for e in entries))
    assert [s.kind for s in starts] == ["ok"] * 40
    await asyncio.gather(*(due.complete(e, None, 0) for e in entries))
    # The first start verdict went out at once, alone; the other 39 together after it.
    assert trips.sizes == [40, 40, 1, 39, 40]
    again = await asyncio.gather(*(due.claim(e, e.member(), "ex-2", now_ms(), 10_000)
                                   for e in entries))
    assert again == ["done"] * 40
    assert (await due.sizes())["leases"] == 0


async def test_a_lone_start_verdict_goes_out_in_its_own_turn_of_the_loop(
    due: DueSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A verdict someone waits on at the instant is not held a turn of the loop for a batch
    (on a busy loop each turn can wait milliseconds): with no trip out it goes straight out;
    the verdicts made while it is out share the next trip."""
    entries = _entries(10)
    for e in entries:
        await due.load(e.job_id, 1, "active", TEMPLATE, [])
        assert await due.claim(e, e.member(), "ex-1", now_ms(), 10_000) == "ok"
    await _scripts_loaded(due)
    trips = Trips(monkeypatch)
    spawned: list[int] = []
    spawn = due._verdicts._spawn

    def counted_spawn() -> None:
        spawned.append(len(due._verdicts._pending))
        spawn()

    monkeypatch.setattr(due._verdicts, "_spawn", counted_spawn)

    alone = await due.start(entries[0], "allow", now_ms(), "ex-1", entries[0].member())
    assert alone.kind == "ok" and spawned == [] and trips.sizes == [1]  # in the caller's task
    together = await asyncio.gather(*(due.start(e, "allow", now_ms(), "ex-1", e.member())
                                      for e in entries[1:]))
    assert [s.kind for s in together] == ["ok"] * 9
    assert trips.sizes == [1, 1, 8] and spawned == [8]  # the first of the turn, then 8 in one


async def test_a_start_verdict_does_not_wait_behind_a_trip_of_claims(
    due: DueSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 1,000 firings/s a trip of the executor's calls is nearly always out, and one of a
    lookahead's claims carries hundreds of scripts. A verdict someone waits on at the instant
    goes on a connection of its own and is answered before them (ADR 0058); sharing their
    connection, it waited for their whole trip and then for its own."""
    entries = _entries(502)
    for e in entries:
        await due.load(e.job_id, 1, "active", TEMPLATE, [])
    for e in entries[:2]:
        assert await due.claim(e, e.member(), "ex-1", now_ms(), 10_000) == "ok"
    await _scripts_loaded(due)
    # Both connections connected before the race (a first trip also connects).
    assert (await due.start(entries[0], "allow", now_ms(), "ex-1", entries[0].member())).kind \
        == "ok"
    trips = Trips(monkeypatch)

    claims = [asyncio.create_task(due.claim(e, e.member(), "ex-1", now_ms(), 10_000))
              for e in entries[2:]]
    for _ in range(3):  # the claims are made and their trip goes out
        await asyncio.sleep(0)
    assert trips.sizes == [500]
    verdict = await due.start(entries[1], "allow", now_ms(), "ex-1", entries[1].member())
    assert verdict.kind == "ok"
    assert not all(claim.done() for claim in claims)
    assert await asyncio.gather(*claims) == ["ok"] * 500
    assert trips.sizes == [500, 1]


async def test_calls_made_while_a_trip_is_out_share_the_next(
    due: DueSet, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """However the calls arrive, no call waits for more than the trip out and its own, and
    calls never go out one by one while others wait (the executor under load)."""
    entries = _entries(30)
    for e in entries:
        await due.load(e.job_id, 1, "active", TEMPLATE, [])
    await _scripts_loaded(due)
    trips = Trips(monkeypatch)

    async def claim_later(e: Entry, turns: int) -> str:
        for _ in range(turns):
            await asyncio.sleep(0)
        return await due.claim(e, e.member(), "ex-1", now_ms(), 10_000)

    claims = await asyncio.gather(*(claim_later(e, i % 6) for i, e in enumerate(entries)))
    assert claims == ["ok"] * 30
    assert sum(trips.sizes) == 30 and len(trips.sizes) < 30, trips.sizes


async def test_a_held_connection_the_server_closed_costs_no_call(
    due: DueSet, redis: Redis,
) -> None:
    """The batch's own connection, closed by the server while idle (a Redis restart, a
    timeout), is noticed before the next trip, not by failing it (ADR 0052, 0055)."""
    entries = _entries(2)
    for e in entries:
        await due.load(e.job_id, 1, "active", TEMPLATE, [])
    assert await due.claim(entries[0], entries[0].member(), "ex-1", now_ms(), 10_000) == "ok"
    held = due._batch._connection
    assert held is not None
    await held.send_command("CLIENT", "ID")
    assert await redis.client_kill_filter(_id=await held.read_response()) == 1
    await asyncio.sleep(0.1)  # the close reaches the client
    assert await due.claim(entries[1], entries[1].member(), "ex-1", now_ms(), 10_000) == "ok"


async def test_one_failing_call_fails_alone(redis: Redis) -> None:
    batch = ScriptBatch(redis)
    plus_one = redis.register_script("return tonumber(ARGV[1]) + 1")
    calls = [batch.call(plus_one, [], [arg]) for arg in ("1", "not a number", "41")]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert results[0] == 2 and results[2] == 42
    assert isinstance(results[1], ResponseError)


LUA_REPLIES = [
    "return 42", "return 'text'", "return {1, 'two', {3, {}}}", "return false", "return true",
    "return nil", "return redis.status_reply('FINE')", "return redis.error_reply('MINE wrong')",
    "return {err = 'ERR custom'}", "return 3.7", "return redis.call('HELLO')",
    "return tonumber('x') + 1",
]


async def test_script_replies_are_what_redis_py_returns(redis: Redis) -> None:
    """The batch reads replies itself (duetime/resp_wire.py, ADR 0056): each kind a script
    can answer, from the real server, is what redis-py's own call returns."""
    batch = ScriptBatch(redis)
    for text in LUA_REPLIES:
        script = redis.register_script(text)
        theirs: Any
        try:
            theirs = await script()
        except ResponseError as exc:
            theirs = exc
        ours = (await asyncio.gather(batch.call(script, [], []), return_exceptions=True))[0]
        if isinstance(theirs, Exception):
            assert (type(ours), str(ours)) == (type(theirs), str(theirs)), text
        else:
            assert ours == theirs, text


async def test_a_trip_cancelled_before_its_reply_leaves_nothing_for_the_next(
    redis: Redis,
) -> None:
    """A caller cancelled while its reply is on the way (the executor shutting down, a
    timeout): the reply must not be read as the next call's."""
    batch = ScriptBatch(redis)
    slow = redis.register_script(
        "local t0 = redis.call('TIME') local t repeat t = redis.call('TIME') until "
        "(t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 200000 return ARGV[1]")
    echo = redis.register_script("return ARGV[1]")
    await batch.run_first(echo, [], ["warm"])  # connected, scripts known
    first = asyncio.create_task(batch.run_first(slow, [], ["first"]))
    await asyncio.sleep(0.05)  # sent; Redis is running it
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await batch.run_first(echo, [], ["second"]) == b"second"


@pytest.mark.alone
async def test_a_script_redis_forgot_is_loaded_again_once_for_the_whole_batch(
    due: DueSet, redis: Redis, monkeypatch: pytest.MonkeyPatch,
) -> None:
    entries = _entries(40)
    for e in entries:
        await due.load(e.job_id, 1, "active", TEMPLATE, [])
    await redis.script_flush()  # as after a Redis restart without its scripts
    trips = Trips(monkeypatch)
    single: list[str] = []
    execute: Any = redis.execute_command

    async def counted(*args: Any, **kwargs: Any) -> Any:
        single.append(str(args[0]))
        return await execute(*args, **kwargs)

    redis.execute_command = counted  # type: ignore[method-assign]
    claims = await asyncio.gather(*(due.claim(e, e.member(), "ex-1", now_ms(), 10_000)
                                    for e in entries))
    assert claims == ["ok"] * 40
    # The batch, the script loaded once, the 40 calls again together: not one trip each.
    assert trips.sizes == [40, 40] and single == ["SCRIPT LOAD"], (trips.sizes, single)


async def test_a_lost_round_trip_fails_every_call_of_it(due: DueSet) -> None:
    entry = _entries(1)[0]
    nowhere = Redis(port=1, socket_connect_timeout=0.5)  # nothing listens there
    broken = DueSet(nowhere, shards=1, prefix=due.prefix)
    try:
        results = await asyncio.gather(*(broken.claim(entry, entry.member(), f"ex-{i}",
                                                      now_ms(), 1000) for i in range(3)),
                                       return_exceptions=True)
    finally:
        await nowhere.aclose()
    assert all(isinstance(r, RedisConnectionError) for r in results), results


@pytest.mark.parametrize("drain", [False, True])
async def test_acknowledged_entries_leave_the_in_flight_set(due: DueSet, drain: bool) -> None:
    entries = _entries(3)
    for e in entries:
        await due.load(e.job_id, 1, "active", TEMPLATE, [e])
    d, producer = dispatcher(due)
    count, _ = await d.dispatch()
    assert count == 3 and len(producer.sent) == 6  # a run request and a queued status each
    await asyncio.gather(*d.ack_tasks)  # Kafka acknowledged them
    assert (await due.sizes())["inflight"] == 3  # written with the next round, not alone
    if drain:
        await d.drain()
    else:
        await d.dispatch()
    assert (await due.sizes())["inflight"] == 0 and d.acks == {}
