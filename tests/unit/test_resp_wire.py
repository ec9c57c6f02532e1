"""The executor's own RESP packing and reply reading (duetime/resp_wire.py, ADR 0056), held to
redis-py's: the commands it packs are byte for byte redis-py's, and the replies it reads are
what redis-py's RESP3 parser returns for the same bytes — for random values, and for
truncated, malformed and hostile input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis._parsers.encoders import Encoder
from redis._parsers.resp3 import _AsyncRESP3Parser
from redis.asyncio.connection import Connection
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    InvalidResponse,
    NoScriptError,
    ResponseError,
)

from duetime import resp_wire

SHA = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
WORDS = st.one_of(
    st.text(max_size=40),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(WORDS, max_size=6), st.lists(WORDS, max_size=10)),
                min_size=1, max_size=5))
def test_commands_are_packed_as_redis_py_packs_them(
        calls: list[tuple[list[Any], list[Any]]]) -> None:
    expected = b"".join(Connection().pack_commands(
        [("EVALSHA", SHA, len(keys), *keys, *args) for keys, args in calls]))
    assert resp_wire.evalsha_commands([(SHA, keys, args) for keys, args in calls]) == expected


@pytest.mark.parametrize("value", [True, None, object(), [1], {"a": 1}])
def test_an_argument_of_no_wire_form_is_refused(value: Any) -> None:
    with pytest.raises(TypeError, match="bytes, str, int or float"):
        resp_wire.evalsha_commands([(SHA, [], [value])])


def test_subclasses_and_buffers_are_written_as_their_value() -> None:
    class Name(str):
        pass

    assert resp_wire.word(Name("job")) == b"job"
    assert resp_wire.word(bytearray(b"ab")) == b"ab"
    assert resp_wire.word(memoryview(b"cd")) == b"cd"
    assert resp_wire.word(-7) == b"-7"
    assert resp_wire.word(0.5) == b"0.5"


# -- replies ---------------------------------------------------------------------------------

LEAVES = st.one_of(
    st.binary(max_size=30).map(lambda b: ("$", b)),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda i: (":", i)),
    st.integers(min_value=2**64, max_value=2**90).map(lambda i: ("(", i)),
    st.text(alphabet="abcdefgh OK_-:", max_size=20).map(lambda s: ("+", s)),
    st.just(("_", None)),
    st.booleans().map(lambda b: ("#", b)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: (",", f)),
    st.text(alphabet="abcdef xyz", max_size=20).map(lambda s: ("=", s)),
    st.sampled_from(["ERR bad thing", "NOSCRIPT No matching script", "READONLY replica",
                     "WRONGTYPE Operation", "user_script:1: oops"]).map(lambda s: ("-", s)),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4).map(lambda xs: ("*", xs)),
                            st.lists(inner, max_size=4).map(lambda xs: ("~", xs)),
                            st.lists(st.tuples(LEAVES.filter(lambda v: v[0] in "$:+"), inner),
                                     max_size=3).map(lambda kv: ("%", kv))),
    max_leaves=12,
)


def wire(value: tuple[str, Any]) -> bytes:
    kind, data = value
    if kind in ("*", "~"):
        return f"{kind}{len(data)}\r\n".encode() + b"".join(map(wire, data))
    if kind == "%":
        return f"%{len(data)}\r\n".encode() + b"".join(wire(k) + wire(v) for k, v in data)
    if kind == "$":
        return b"$%d\r\n%s\r\n" % (len(data), data)
    if kind == "=":
        text = b"txt:" + data.encode()
        return b"=%d\r\n%s\r\n" % (len(text), text)
    if kind == "#":
        return b"#t\r\n" if data else b"#f\r\n"
    if kind == ",":
        return f",{data!r}\r\n".encode()
    if kind == "_":
        return b"_\r\n"
    return f"{kind}{data}\r\n".encode()


def stream_of(data: bytes) -> asyncio.StreamReader:
    """A stream holding `data`, then its end (made inside the loop that reads it)."""
    stream = asyncio.StreamReader()
    stream.feed_data(data)
    stream.feed_eof()
    return stream


async def redis_py_reads(data: bytes, count: int) -> list[Any]:
    parser = _AsyncRESP3Parser(socket_read_size=65536)  # type: ignore[no-untyped-call]
    parser._stream = stream_of(data)
    parser.encoder = Encoder("utf-8", "strict", decode_responses=False)  # type: ignore[no-untyped-call]
    parser._connected = True
    return [await parser.read_response() for _ in range(count)]


def comparable(value: Any) -> Any:
    """Each value with its type (1 == 1.0 == True, but a reply's type matters); errors by
    class and text (two instances are never equal)."""
    if isinstance(value, Exception):
        return (type(value), str(value))
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if isinstance(value, dict):
        return {comparable(k): comparable(v) for k, v in value.items()}
    return (type(value), value)


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, min_size=1, max_size=4))
def test_replies_are_read_as_redis_py_reads_them(values: list[tuple[str, Any]]) -> None:
    data = b"".join(map(wire, values))

    async def both() -> tuple[list[Any], list[Any]]:
        ours = stream_of(data)
        mine = [await resp_wire.reply(ours) for _ in values]
        assert ours.at_eof()  # every byte of each reply consumed, none of the next
        return mine, await redis_py_reads(data, len(values))

    mine, theirs = asyncio.run(both())
    assert comparable(mine) == comparable(theirs)


async def one(data: bytes) -> Any:
    return await resp_wire.reply(stream_of(data))


def read(data: bytes) -> Any:
    return asyncio.run(one(data))


def test_error_replies_are_redis_py_s_classes() -> None:
    assert isinstance(read(b"-NOSCRIPT No matching script.\r\n"), NoScriptError)
    blob = read(b"!21\r\nSYNTAX invalid syntax\r\n")
    assert type(blob) is ResponseError and str(blob) == "SYNTAX invalid syntax"
    # Errors of the connection (redis-py's ConnectionError family) are raised, as redis-py's
    # parser raises them: the trip's other replies are then not read.
    with pytest.raises(ConnectionError):
        read(b"-ERR max number of clients reached\r\n")
    with pytest.raises(BusyLoadingError):
        read(b"-LOADING Redis is loading the dataset in memory\r\n")


def test_resp2_nulls_are_none() -> None:
    # The services speak RESP3 (redis-py 8's default), whose null is "_"; a RESP2 server's
    # nulls read the same.
    assert read(b"$-1\r\n") is None and read(b"*-1\r\n") is None


def test_a_push_before_the_reply_is_passed_over() -> None:
    data = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n$2\r\nok\r\n"
    assert read(data) == b"ok"


@pytest.mark.parametrize("data, error", [
    (b"", asyncio.IncompleteReadError),                    # the server closed the connection
    (b"$5\r\nabc", asyncio.IncompleteReadError),           # cut inside a bulk string
    (b":12", asyncio.IncompleteReadError),                 # cut before the line's end
    (b"*3\r\n:1\r\n:2\r\n", asyncio.IncompleteReadError),  # an array short of an item
    (b"?what\r\n", InvalidResponse),                       # no reply kind starts so
    (b"$abc\r\n", ValueError),                             # a length that is no number
    (b":1e3\r\n", ValueError),
    (b"*-\r\n", ValueError),
])
def test_a_cut_or_malformed_reply_is_an_error_not_a_value(data: bytes,
                                                          error: type[Exception]) -> None:
    with pytest.raises(error):
        read(data)


def test_a_huge_declared_length_waits_for_the_bytes_instead_of_allocating_them() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        read(b"$99999999999\r\nshort\r\n")
