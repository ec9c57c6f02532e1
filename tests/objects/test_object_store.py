"""The ObjectStore contract, run against each backend (tests/objects/conftest.py)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from duetime.objects.keys import InvalidKey, output_key
from duetime.objects.retention import Swept, is_output_key, remove_expired_output
from duetime.objects.store import ObjectNotFound, ObjectStore

MIB = 1024 * 1024


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read(store: ObjectStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.get(key, start, end)])


async def test_a_stream_larger_than_a_part_is_stored_intact(store: ObjectStore) -> None:
    data = os.urandom(12 * MIB + 12345)  # more than two 5 MiB multipart parts, and a remainder
    key = output_key("tenant-a", "job1", "run1", 1)
    assert await store.put(key, chunks_of(data)) == len(data)
    got = await read(store, key)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    assert (await store.head(key)).size == len(data)


async def test_ranges(store: ObjectStore) -> None:
    data = bytes(range(256)) * 40
    key = "t/j/r/1"
    await store.put(key, chunks_of(data, 1000))
    assert await read(store, key, 10, 20) == data[10:20]
    assert await read(store, key, 10_000) == data[10_000:]
    assert await read(store, key, 10_000, 99_999) == data[10_000:]
    assert await read(store, key, len(data) + 5) == b""
    assert await read(store, key, 7, 7) == b""
    assert await read(store, key, 0, 1) == data[:1]


async def test_an_empty_object_exists(store: ObjectStore) -> None:
    await store.put("t/j/r/2", chunks_of(b""))
    assert (await store.head("t/j/r/2")).size == 0
    assert await read(store, "t/j/r/2") == b""


async def test_missing_objects(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await read(store, "t/none/r/1")
    with pytest.raises(ObjectNotFound):
        await read(store, "t/none/r/1", 5, 10)
    with pytest.raises(ObjectNotFound):
        await store.head("t/none/r/1")
    await store.delete("t/none/r/1")  # not an error


async def test_delete(store: ObjectStore) -> None:
    await store.put("t/j/r/1", chunks_of(b"gone soon"))
    await store.delete("t/j/r/1")
    with pytest.raises(ObjectNotFound):
        await store.head("t/j/r/1")
    assert await store.list("t/") == []


async def test_list_by_prefix(store: ObjectStore) -> None:
    keys = [output_key("ta", "job1", "run1", 1), output_key("ta", "job1", "run1", 1, "build"),
            output_key("ta", "job1", "run2", 2), output_key("ta", "job10", "run1", 1),
            output_key("tb", "job1", "run1", 1)]
    for i, key in enumerate(keys):
        await store.put(key, chunks_of(b"x" * (i + 1)))
    assert [(o.key, o.size) for o in await store.list("ta/job1/")] == [
        ("ta/job1/run1/1/output", 1), ("ta/job1/run1/1/step=build", 2), ("ta/job1/run2/2/output", 3)]
    assert [o.key for o in await store.list("ta/job1")] == [
        "ta/job1/run1/1/output", "ta/job1/run1/1/step=build", "ta/job1/run2/2/output",
        "ta/job10/run1/1/output"]
    assert [o.key for o in await store.list("ta/job1/run1/1/s")] == ["ta/job1/run1/1/step=build"]
    assert [o.key for o in await store.list("")] == sorted(keys)
    assert await store.list("tc/") == []


async def test_put_replaces(store: ObjectStore) -> None:
    await store.put("t/j/r/1", chunks_of(b"first version, longer"))
    await store.put("t/j/r/1", chunks_of(b"second"))
    assert await read(store, "t/j/r/1") == b"second"


async def test_a_failed_stream_stores_nothing_and_keeps_the_old_object(store: ObjectStore) -> None:
    await store.put("t/j/r/1", chunks_of(b"old"))

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * (6 * MIB)  # past the first multipart part
        raise RuntimeError("the command's output stream broke")

    with pytest.raises(RuntimeError, match="broke"):
        await store.put("t/j/r/1", broken())
    with pytest.raises(RuntimeError, match="broke"):
        await store.put("t/j/r/2", broken())
    assert await read(store, "t/j/r/1") == b"old"
    assert [o.key for o in await store.list("t/")] == ["t/j/r/1"]


@pytest.mark.parametrize("key", ["", "../etc/passwd", "/abs/key", "a//b", "a/../b", ".hidden/x",
                                 "a/./b", "a/b/", "a\\b", "a b", "a/\x00", "x" * 1025, "ü/x"])
async def test_hostile_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.put(key, chunks_of(b"x"))
    with pytest.raises(InvalidKey):
        await read(store, key)
    with pytest.raises(InvalidKey):
        await store.head(key)
    with pytest.raises(InvalidKey):
        await store.delete(key)


@pytest.mark.parametrize("prefix", ["../", "/", "a//", "a/../"])
async def test_hostile_prefixes_are_refused(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        await store.list(prefix)


def test_output_keys() -> None:
    assert output_key("acme", "j1", "r1", 2) == "acme/j1/r1/2/output"
    assert output_key("acme", "j1", "r1", 2, "build") == "acme/j1/r1/2/step=build"
    with pytest.raises(InvalidKey):
        output_key("acme", "j1", "r1", 0)
    with pytest.raises(InvalidKey):
        output_key("..", "j1", "r1", 1)
    with pytest.raises(InvalidKey):
        output_key("acme", "j1", "r1", 1, "../x")


async def test_listings_say_when_each_object_was_written(store: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)  # S3 keeps whole seconds
    await store.put("t/j/r/1", chunks_of(b"x"))
    [listed] = await store.list("t/")
    head = await store.head("t/j/r/1")
    after = datetime.now(UTC) + timedelta(seconds=5)
    assert listed.modified is not None and before <= listed.modified <= after
    assert head.modified is not None and before <= head.modified <= after


RUN_A, RUN_B = "0b6f3c9e-1d2a-8e4f-9a7b-3c5d7e9f1a2b", "5e8f0a2c-4b6d-8f1e-a3c5-7d9e1f3a5b7c"


async def test_expired_output_is_removed_and_nothing_else(store: ObjectStore) -> None:
    outputs = {output_key("ta", "job1", RUN_A, 1): b"a" * 3,
               output_key("ta", "job1", RUN_A, 1, "build"): b"b" * 5,
               output_key("ta", "job2", RUN_B, 12): b"c" * 7,
               output_key("tb", "job1", RUN_A, 1): b"d" * 11}
    # A tenant's sources, and keys of other shapes, are never output.
    kept = ["ta/sources/job1/" + RUN_A + "/1/notes", "ta/sources/tools.tar.gz",
            "ta/job1/not-a-run-id/1/output", f"ta/job1/{RUN_A}/0/output"]
    for key, data in {**outputs, **{k: b"keep" for k in kept}}.items():
        await store.put(key, chunks_of(data))
    now = datetime.now(UTC)
    # Nothing is older than a day ago: nothing goes.
    assert await remove_expired_output(store, now - timedelta(days=1)) == Swept(0, 0)
    assert len(await store.list("")) == len(outputs) + len(kept)
    # Under a prefix only that prefix's output goes.
    assert await remove_expired_output(store, now + timedelta(days=1), "tb/") == Swept(1, 11)
    # Everything written before tomorrow is expired by then: all output, and only output.
    assert await remove_expired_output(store, now + timedelta(days=1)) == Swept(3, 15)
    assert [o.key for o in await store.list("")] == sorted(kept)


@pytest.mark.parametrize(("key", "output"), [
    (output_key("t", "j", RUN_A, 1), True),
    (output_key("t", "j", RUN_A, 3, "test"), True),
    (f"t/j/{RUN_A}/1/output/more", False),
    (f"t/j/{RUN_A.upper()}/1/output", False),
    (f"t/j/{RUN_A}/01/output", False),
    (f"t/j/{RUN_A}/1/log", False),
    (f"t/{RUN_A}/1/output", False),
    ("t/sources/a.tar", False),
    (f"t/sources/{RUN_A}/1/output", False),  # a tenant's upload shaped like output: theirs
])
def test_what_counts_as_output(key: str, output: bool) -> None:
    assert is_output_key(key) is output
