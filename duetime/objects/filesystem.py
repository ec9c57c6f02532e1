"""The embedded backend: objects as files under one directory (default `.stack/objects`)."""

from __future__ import annotations

import asyncio
import builtins
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from duetime.objects.keys import validate_key
from duetime.objects.store import ObjectInfo, ObjectNotFound, ObjectStore

READ_CHUNK = 256 * 1024
# An object is stored as `<key>.obj`, so `a/b` and `a/b/c` can both exist (a file and a
# directory of different names). Partial uploads live in `.partial/`, a name no key can have.
_SUFFIX = ".obj"
_PARTIAL = ".partial"


class FilesystemStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        (self.root / _PARTIAL).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / (validate_key(key) + _SUFFIX)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        final = self._path(key)
        partial = self.root / _PARTIAL / uuid.uuid4().hex
        size = 0
        # File writes go to a thread: a slow disk must not stall the event loop.
        handle = await asyncio.to_thread(open, partial, "wb")
        try:
            async for chunk in chunks:
                await asyncio.to_thread(handle.write, chunk)
                size += len(chunk)
            await asyncio.to_thread(handle.flush)
            await asyncio.to_thread(os.fsync, handle.fileno())
        except BaseException:
            handle.close()
            partial.unlink(missing_ok=True)
            raise
        handle.close()
        await asyncio.to_thread(self._place, partial, final)
        return size

    def _place(self, partial: Path, final: Path) -> None:
        # Atomic: readers see the old object or the whole new one. A delete may remove the
        # directory, emptied, between the mkdir and the rename: then it is made again.
        for attempt in range(3):
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(partial, final)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    async def get(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        with handle:
            await asyncio.to_thread(handle.seek, max(start, 0))
            left = None if end is None else max(end - max(start, 0), 0)
            while left is None or left > 0:
                want = READ_CHUNK if left is None else min(READ_CHUNK, left)
                chunk = await asyncio.to_thread(handle.read, want)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def head(self, key: str) -> ObjectInfo:
        try:
            stat = await asyncio.to_thread(os.stat, self._path(key))
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        return _info(key, stat)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, self._path(key))

    def _delete(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        # Directories emptied go too: a store swept for years is not a tree of empty folders.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): the rest of the way up is in use
                return
            parent = parent.parent

    async def list(self, prefix: str) -> list[ObjectInfo]:
        validate_key(prefix, prefix=True)
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> builtins.list[ObjectInfo]:
        top = self.root / prefix.rpartition("/")[0]
        found: builtins.list[ObjectInfo] = []
        for directory, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d != _PARTIAL]
            for name in files:
                if not name.endswith(_SUFFIX):
                    continue
                path = Path(directory) / name
                key = str(path.relative_to(self.root))[: -len(_SUFFIX)]
                if key.startswith(prefix):
                    try:
                        found.append(_info(key, path.stat()))
                    except FileNotFoundError:  # deleted while listing
                        continue
        return sorted(found, key=lambda info: info.key)


def _info(key: str, stat: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))
