"""Where a sandboxed command's output goes: streamed, counted, cut at a byte limit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

from duetime.objects.store import ObjectStore


class OutputSink(Protocol):
    async def write(self, chunk: bytes) -> None: ...


class LimitedOutput:
    """Passes on the first `limit` bytes; counts every byte the command wrote."""

    def __init__(self, inner: OutputSink, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.total = 0
        self.kept = 0

    @property
    def truncated(self) -> bool:
        return self.total > self.kept

    async def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - self.kept
        if room > 0:
            part = chunk[:room]
            self.kept += len(part)
            await self.inner.write(part)


class StoredOutput:
    """Streams into `store.put(key)` while the command runs: one bounded queue, no buffering
    of the whole output, and a slow store slows the reader (backpressure), not memory."""

    def __init__(self, store: ObjectStore, key: str, queue_chunks: int = 16) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(queue_chunks)
        self._upload = asyncio.create_task(store.put(key, self._chunks()))

    async def _chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._queue.get()) is not None:
            yield chunk

    async def write(self, chunk: bytes) -> None:
        put = asyncio.ensure_future(self._queue.put(chunk))
        await asyncio.wait({put, self._upload}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            await self._upload  # the upload ended early: only by failing; raise its error here

    async def close(self) -> int:
        """Ends the stream; returns the stored size once the object is complete."""
        await self._queue.put(None)
        return await self._upload

    async def abort(self) -> None:
        self._upload.cancel()
        # Aborting: whatever the upload ended with, there is nothing to keep.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._upload
