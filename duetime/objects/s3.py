"""The production backend: any S3-compatible service, through obstore (ADR 0027)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any

import obstore

if TYPE_CHECKING:
    from obstore.store import ClientConfig
from obstore.store import S3Store as _ObstoreS3

from duetime.objects.keys import validate_key
from duetime.objects.store import ObjectInfo, ObjectNotFound, ObjectStore

# Parts of a multipart upload: S3's minimum part is 5 MiB; one part in memory at a time.
PART_SIZE = 5 * 1024 * 1024


class S3Store(ObjectStore):
    def __init__(self, bucket: str, *, endpoint: str | None = None, region: str = "us-east-1",
                 access_key_id: str | None = None, secret_access_key: str | None = None,
                 prefix: str = "") -> None:
        options: dict[str, Any] = {"region": region}
        if endpoint:
            # S3-compatible servers (S3Proxy, MinIO, Ceph) are addressed by path, not by a
            # bucket subdomain; plain http only where the operator wrote an http:// endpoint.
            options.update(endpoint=endpoint, virtual_hosted_style_request=False)
        if access_key_id and secret_access_key:
            options.update(access_key_id=access_key_id, secret_access_key=secret_access_key)
        client: ClientConfig = {"allow_http": bool(endpoint and endpoint.startswith("http://"))}
        self._store = _ObstoreS3(bucket, prefix=prefix or None, client_options=client, **options)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        size = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                size += len(chunk)
                yield chunk

        # An empty stream still creates an (empty) object, as the filesystem backend does.
        await obstore.put_async(self._store, validate_key(key), counted(), chunk_size=PART_SIZE)
        return size

    async def get(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        validate_key(key)
        start = max(start, 0)
        if end is not None and end <= start:
            await self.head(key)  # still: a missing object is an error, an empty range is not
            return
        try:
            if start == 0 and end is None:
                result = await obstore.get_async(self._store, key)
            else:
                size = (await self.head(key)).size
                stop = size if end is None else min(end, size)
                if start >= stop:
                    return
                result = await obstore.get_async(self._store, key, options={"range": (start, stop)})
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        async for chunk in result.stream():
            yield bytes(chunk)

    async def head(self, key: str) -> ObjectInfo:
        try:
            meta = await obstore.head_async(self._store, validate_key(key))
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        return ObjectInfo(key, meta["size"], meta["last_modified"])

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self._store, validate_key(key))
        except FileNotFoundError:
            return

    async def list(self, prefix: str) -> list[ObjectInfo]:
        validate_key(prefix, prefix=True)
        found: list[ObjectInfo] = []
        # obstore lists by path segments; a prefix that ends inside a segment is filtered here.
        base = prefix.rpartition("/")[0] or None
        async for batch in obstore.list(self._store, base):
            found.extend(ObjectInfo(m["path"], m["size"], m["last_modified"]) for m in batch
                         if m["path"].startswith(prefix))
        return sorted(found, key=lambda info: info.key)
