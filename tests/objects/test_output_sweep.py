"""The command executor's retention task (ADR 0038): output older than
`output_retention_days` goes, younger output stays — judged by the store's own clock."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from duetime.objects.filesystem import FilesystemStore
from duetime.objects.keys import output_key
from duetime.objects.settings import ObjectStoreSettings
from executor.command.service import expire_output

RUN = "0b6f3c9e-1d2a-8e4f-9a7b-3c5d7e9f1a2b"


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def with_objects(root: Path, *keys: str) -> FilesystemStore:
    store = FilesystemStore(root)
    for key in keys:
        await store.put(key, one(key.encode()))
    return store


async def test_the_sweep_removes_output_past_the_retention_days(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    old, young = output_key("t", "j", RUN, 1), output_key("t", "j", RUN, 2)
    async with await with_objects(root, old, young) as store:
        # Written 31 days ago, as far as the store can tell; the other one 29 days ago.
        for key, days in ((old, 31), (young, 29)):
            stamp = time.time() - days * 86400
            os.utime(root / f"{key}.obj", (stamp, stamp))
        stopped = asyncio.Event()
        stopped.set()  # one round, then the task returns as at a drain
        await expire_output(store, ObjectStoreSettings(output_retention_days=30), stopped)
        assert [o.key for o in await store.list("")] == [young]


async def test_deleting_leaves_no_empty_directories(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    gone, kept = output_key("t", "j", RUN, 1), output_key("t", "k", RUN, 1)
    async with await with_objects(root, gone, kept) as store:
        await store.delete(gone)
        assert not (root / "t" / "j").exists()
        assert (root / "t" / "k" / RUN / "1").is_dir()
        await store.put(gone, one(b"again"))  # its folders come back as needed
        assert [o.key for o in await store.list("")] == [gone, kept]
