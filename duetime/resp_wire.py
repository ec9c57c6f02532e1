"""The Redis protocol (RESP2 and RESP3) for the executor's script trips (ADR 0056).

redis-py spends ~40 µs of client CPU per command on the held connection beyond the socket
work itself — its per-argument encoder checks, its read path's timeouts, locks and push
handling (docs/perf, "What one Redis command costs the client"). The executor makes ~2.5 such
commands per firing. Here is only the wire format: EVALSHA commands packed into one buffer,
and replies read off the connection's stream. Connecting, authenticating, TLS and the
handshake stay redis-py's; so does every other command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from redis._parsers import BaseParser
from redis.exceptions import ConnectionError, InvalidResponse, ResponseError

_CRLF = b"\r\n"


def word(value: Any) -> bytes:
    """One argument as redis-py's encoder writes it (bytes as is, str as UTF-8, int and float
    by `repr`); a bool or anything else is refused, as redis-py refuses it."""
    kind = type(value)
    if kind is str:
        return value.encode()  # type: ignore[no-any-return]
    if kind is int:
        return b"%d" % value
    if kind is bytes:
        return value  # type: ignore[no-any-return]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value).encode()
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"a script argument must be bytes, str, int or float, not {kind.__name__}")


def evalsha_commands(calls: Sequence[tuple[str, Sequence[Any], Sequence[Any]]]) -> bytes:
    """`EVALSHA sha numkeys key… arg…` for each (sha, keys, args), as one buffer."""
    parts: list[bytes] = []
    for sha, keys, args in calls:
        words = [b"EVALSHA", sha.encode(), b"%d" % len(keys), *map(word, keys), *map(word, args)]
        parts.append(b"*%d\r\n" % len(words))
        parts.extend(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)
    return b"".join(parts)


def error(message: str) -> ResponseError:
    """The error a call answered, as redis-py's own parser makes it (NOSCRIPT, LOADING, OOM,
    READONLY… each its class); one that means the connection is unusable is raised."""
    found: ResponseError = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]
    if isinstance(found, ConnectionError):
        raise found
    return found


def _error_line(rest: bytes) -> ResponseError:
    return error(rest.decode(errors="replace"))


# Replies whole on their first line: what follows the kind's byte, read.
_ONE_LINE: dict[bytes, Callable[[bytes], Any]] = {
    b":": int, b"(": int, b",": float, b"+": bytes, b"-": _error_line,
    b"_": lambda _: None, b"#": lambda rest: rest == b"t",
}
_BLOBS = frozenset((b"$", b"=", b"!"))
_LISTS = frozenset((b"*", b"~"))


async def reply(stream: asyncio.StreamReader) -> Any:
    """One reply, as redis-py's RESP3 parser returns it undecoded: bytes, int, float, bool,
    None, lists (maps as dicts); an error reply is returned, not raised, so one call's error
    leaves the others of its trip standing. Raises InvalidResponse on a reply of no known
    kind, and the ConnectionError of an error that means one: the caller then drops the
    connection (where the next reply starts is unknown)."""
    line = await stream.readline()
    if not line.endswith(_CRLF):
        raise asyncio.IncompleteReadError(line, None)
    kind, rest = line[:1], line[1:-2]
    one_line = _ONE_LINE.get(kind)
    if one_line is not None:
        return one_line(rest)
    if kind in _BLOBS:
        return await _blob(stream, kind, int(rest))
    if kind in _LISTS:
        size = int(rest)
        return None if size < 0 else [await reply(stream) for _ in range(size)]
    if kind == b"%":
        pairs = [await reply(stream) for _ in range(2 * int(rest))]
        return dict(zip(pairs[::2], pairs[1::2], strict=True))
    if kind == b">":
        # Out-of-band (a push; none is asked for on this connection): not this call's reply.
        for _ in range(int(rest)):
            await reply(stream)
        return await reply(stream)
    raise InvalidResponse(f"unexpected reply from Redis: {line[:40]!r}")


async def _blob(stream: asyncio.StreamReader, kind: bytes, size: int) -> Any:
    if size < 0:
        return None
    data = (await stream.readexactly(size + 2))[:-2]
    if kind == b"=":
        return data[4:]  # verbatim: "txt:" and the text
    if kind == b"!":
        return _error_line(data)
    return data
