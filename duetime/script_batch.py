"""Lua script calls sent together: one round trip for many (issue 8, ADR 0024, 0055, 0056).

Each call is still one script, atomic on its own; only the trip to Redis is shared. Calls in
one pipeline run in the order they were made, so one task's calls (awaited one after the
other) keep their order, and calls of different tasks were never ordered anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError, NoScriptError

from duetime import resp_wire

# One script call: the script, its keys and its arguments.
Call = tuple[AsyncScript, Sequence[Any], Sequence[Any]]


async def run_pipelined(redis: Redis, calls: Sequence[Call]) -> list[Any]:
    """Run `calls` in one pipelined round trip; each result, or the error of that call.

    EVALSHA straight away: redis-py's pipelined scripts first ask `SCRIPT EXISTS`, a second
    round trip every time. An error of the round trip itself (the connection) is raised.
    """
    return await _loading_unknown(redis, calls, lambda some: _evalsha(redis, some))


async def _loading_unknown(redis: Redis, calls: Sequence[Call],
                           send: Callable[[Sequence[Call]], Awaitable[list[Any]]]) -> list[Any]:
    """`send(calls)`; scripts Redis does not know (it restarted) are loaded, once each, and the
    calls they failed are made again in one more round trip (not one each: a batch of 200
    start verdicts after a restart is 3 trips, not 201)."""
    results = await send(calls)
    unknown = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if unknown:
        for text in {calls[i][0].script for i in unknown}:
            await redis.script_load(text)
        for i, result in zip(unknown, await send([calls[i] for i in unknown]), strict=True):
            results[i] = result
    return results


async def _evalsha(redis: Redis, calls: Sequence[Call]) -> list[Any]:
    async with redis.pipeline(transaction=False) as pipe:
        for script, keys, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
    return results


class ScriptBatch:
    """Script calls on one connection of their own, each trip carrying every call made while
    the one before it was out (ADR 0055). The executor holds two: one for its claims and
    completions, one for its start verdicts (ADR 0058).

    The executor's tasks claim, start and complete attempts independently. redis-py's pool
    costs ~30 µs of CPU per command beyond the command itself (its lock and bookkeeping;
    docs/perf, "What one Redis command costs the client"): here one connection is held, and
    calls wait for the trip in flight and then go out together, so the busier the executor,
    the more calls share a trip. The connection is redis-py's own (connecting,
    authentication, TLS, the check before a trip); the calls are packed and their replies read
    by `resp_wire` (ADR 0056).
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pending: list[tuple[Call, asyncio.Future[Any]]] = []
        self._busy = False  # a trip is being sent or awaited, or a sender task will start one
        self._sending: set[asyncio.Task[None]] = set()
        self._connection: AbstractConnection | None = None

    async def run_first(self, script: AsyncScript, keys: Sequence[Any],
                        args: Sequence[Any]) -> Any:
        """The script's result; sent at once, in this task, when no trip is out.

        For a call whose answer someone waits on (the start verdict at the instant): a sender
        task would start a turn of the loop later, and on a busy loop a turn can wait behind
        milliseconds of other work. Calls made while this one is out go together after it.
        """
        if self._busy:
            return await self.call(script, keys, args)
        self._busy = True
        try:
            result = (await self._trip([(script, keys, args)]))[0]
        finally:
            self._hand_over()
        if isinstance(result, Exception):
            raise result
        return result

    def call(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        """The script's result, sent with every other call made before its trip goes out."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(((script, keys, args), future))
        if not self._busy:
            self._busy = True
            self._spawn()  # a turn later: this turn's other calls share the trip
        return future

    def _hand_over(self) -> None:
        if self._pending:
            self._spawn()
        else:
            self._busy = False

    def _spawn(self) -> None:
        task = asyncio.create_task(self._send_pending())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_pending(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await self._trip([call for call, _ in batch])
                except Exception as exc:  # the trip failed: every call of it failed
                    results = [exc] * len(batch)
                except BaseException:  # cancelled (the loop is closing): nobody waits forever
                    self._pending = batch + self._pending
                    raise
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its caller was cancelled meanwhile
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._busy = False
            for _, future in self._pending:
                future.cancel()
            self._pending = []

    async def _trip(self, calls: Sequence[Call]) -> list[Any]:
        """Each call's result or error, over the held connection; the connection's own error
        (after which redis-py has closed it: the next trip connects again) is raised."""
        connection = await self._ready()
        return await _loading_unknown(self.redis, calls,
                                      lambda some: _exchange(connection, some))

    async def _ready(self) -> AbstractConnection:
        """The held connection, connected, and not one the server has closed meanwhile (a
        Redis restart): as the pool checks a connection before lending it (ADR 0052)."""
        if self._connection is None:
            # Taken from the pool and never given back: closing the client closes it too.
            self._connection = await self.redis.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        connection = self._connection
        await connection.connect()
        try:
            stale = await connection.can_read()
        except (ConnectionError, OSError):
            stale = True
        if stale:
            await connection.disconnect()
            await connection.connect()
        return connection


async def _exchange(connection: AbstractConnection, calls: Sequence[Call]) -> list[Any]:
    """One trip on the held connection: the calls packed and their replies read by
    `resp_wire` (ADR 0056), redis-py's connection under them. Anything that leaves the stream
    at an unknown place — a lost connection, a reply of no known kind, a cancellation between
    sending and the last reply — drops the connection: the next trip connects again."""
    reader, writer = connection._reader, connection._writer  # redis-py's; None when closed
    if reader is None or writer is None:
        raise ConnectionError("the held Redis connection is closed")
    try:
        if connection.socket_timeout is None:  # the default: no timer per trip
            return await _send_and_read(reader, writer, calls)
        async with asyncio.timeout(connection.socket_timeout):
            return await _send_and_read(reader, writer, calls)
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
        await connection.disconnect(nowait=True)
        raise ConnectionError(f"Redis script trip failed: {exc!r}") from exc
    except BaseException:
        await connection.disconnect(nowait=True)
        raise


async def _send_and_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         calls: Sequence[Call]) -> list[Any]:
    writer.write(resp_wire.evalsha_commands(
        [(script.sha, keys, args) for script, keys, args in calls]))
    await writer.drain()
    return [await resp_wire.reply(reader) for _ in calls]
