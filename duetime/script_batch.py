"""Lua script calls sent together: one round trip for many (issue 8, ADR 0024).

Each call is still one script, atomic on its own; only the trip to Redis is shared. Calls in
one pipeline run in the order they were made, so one task's calls (awaited one after the
other) keep their order, and calls of different tasks were never ordered anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

# One script call: the script, its keys and its arguments.
Call = tuple[AsyncScript, Sequence[Any], Sequence[Any]]


async def run_pipelined(redis: Redis, calls: Sequence[Call]) -> list[Any]:
    """Run `calls` in one pipelined round trip; each result, or the error of that call.

    EVALSHA straight away: redis-py's pipelined scripts first ask `SCRIPT EXISTS`, a second
    round trip every time. Scripts Redis does not know (it restarted) are loaded, once each,
    and the calls they failed are made again in one more round trip (not one each: a batch
    of 200 start verdicts after a restart is 3 trips, not 201). An error of the round trip
    itself (the connection) is raised.
    """
    results = await _evalsha(redis, calls)
    unknown = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if unknown:
        for text in {calls[i][0].script for i in unknown}:
            await redis.script_load(text)
        for i, result in zip(unknown, await _evalsha(redis, [calls[i] for i in unknown]),
                             strict=True):
            results[i] = result
    return results


async def _evalsha(redis: Redis, calls: Sequence[Call]) -> list[Any]:
    async with redis.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
    return results


class ScriptBatch:
    """Coalesces the script calls made in one turn of the event loop into one round trip.

    The executor's tasks claim, start and complete attempts independently; a fetched batch of
    run requests (or the calls that answered together) makes its calls in the same turn, and
    they go to Redis as one pipeline instead of a round trip each.
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pending: list[tuple[Call, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._turn_taken = False

    async def run_first(self, script: AsyncScript, keys: Sequence[Any],
                        args: Sequence[Any]) -> Any:
        """The script's result; sent at once if it is the first call of this turn of the loop.

        For a call whose answer someone waits on (the start verdict at the instant): a batch
        is sent two turns of the loop after its first call, and on a busy loop each turn can
        wait behind milliseconds of other work. The first call of a turn goes straight out;
        the calls made after it in the same turn (the rest of an instant's verdicts) still
        share one trip — two trips where there was one, none of them held back.
        """
        if self._turn_taken or self._pending:
            return await self.call(script, keys, args)
        self._turn_taken = True
        asyncio.get_running_loop().call_soon(self._end_turn)
        return await script(keys=keys, args=args)

    def _end_turn(self) -> None:
        self._turn_taken = False

    def call(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        """The script's result, sent with every other call of this turn of the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(((script, keys, args), future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        calls = [call for call, _ in batch]
        try:
            if len(calls) == 1:
                script, keys, args = calls[0]
                results: list[Any] = [await script(keys=keys, args=args)]
            else:
                results = await run_pipelined(self.redis, calls)
        except Exception as exc:  # the round trip failed: every call of it failed
            results = [exc] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
