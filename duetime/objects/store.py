"""The object store interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType


class ObjectNotFound(LookupError):
    """No object under that key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object {key!r}")
        self.key = key


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    # When the object was last written (the backend's clock): what retention judges by.
    modified: datetime | None = field(default=None, compare=False)


class ObjectStore(ABC):
    """Streams in, streams out: no backend holds a whole object in memory.

    Keys are validated by `duetime.objects.keys.validate_key`. A `put` is all or nothing: an
    object is visible only once its stream ended, and a stream that raised leaves no object
    (nor replaces the one that was there).
    """

    @abstractmethod
    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Stores the stream under `key` (replacing any object there); returns its size."""

    @abstractmethod
    def get(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """The bytes [start, end) of the object (end None: to its end), as chunks.

        Raises ObjectNotFound on the first iteration when there is no such object; a range past
        the end yields what there is (nothing when start is past it).
        """

    @abstractmethod
    async def head(self, key: str) -> ObjectInfo:
        """The object's size; ObjectNotFound when there is none."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Removes the object; deleting a missing one is not an error."""

    @abstractmethod
    async def list(self, prefix: str) -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order, with its size and age."""

    async def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Releases the backend's connections."""

    async def __aenter__(self) -> ObjectStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
