"""A run's `source`: an object of the tenant's, put into the run's directory (ADR 0032).

The object is `<tenant>/sources/<object>` in the object store. An archive (`.tar`, `.tar.gz`,
`.tgz`) becomes the run's files, each member checked like `files` (relative, no `..`), regular
files only (no links, devices or fifos); anything else is one file named as its last segment.
Both are bounded in size, so a source cannot fill the executor's memory or disk.
"""

from __future__ import annotations

import asyncio
import io
import tarfile

from duetime.objects import ObjectNotFound, ObjectStore, validate_key
from duetime.objects.keys import InvalidKey
from executor.command.spec import MAX_FILES, SpecRefused, relative_path
from schemas.api import Source

MAX_SOURCE_BYTES = 64 * 1024 * 1024  # the stored object, and what an archive unpacks to
ARCHIVES = (".tar", ".tar.gz", ".tgz")


def source_key(tenant: str, source: Source) -> str:
    return validate_key(f"{tenant}/sources/{source.object}")


async def source_files(store: ObjectStore, tenant: str, source: Source) -> dict[str, bytes]:
    """The files the source gives the run; SpecRefused (safe to show) when it cannot."""
    try:
        key = source_key(tenant, source)
        size = (await store.head(key)).size
    except (ObjectNotFound, InvalidKey):
        raise SpecRefused(f"source: no object {source.object!r} under this tenant's sources/"
                          ) from None
    if size > MAX_SOURCE_BYTES:
        raise SpecRefused(f"source: {source.object!r} is {size} bytes; at most "
                          f"{MAX_SOURCE_BYTES}")
    data = b"".join([chunk async for chunk in store.get(key)])
    name = source.object.rsplit("/", 1)[-1]
    if name.endswith(ARCHIVES):
        return await asyncio.to_thread(unpack, data)
    return {name: data}


def unpack(data: bytes) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive:
                if member.isdir():
                    continue
                if not member.isfile():
                    raise SpecRefused(f"source: {member.name[:80]!r} is not a regular file "
                                      "(links and devices are refused)")
                name = member.name.removeprefix("./")
                relative_path(name, "source")
                total += member.size
                if total > MAX_SOURCE_BYTES or len(files) >= MAX_FILES:
                    raise SpecRefused(f"source: unpacks to more than {MAX_SOURCE_BYTES} bytes "
                                      f"or {MAX_FILES} files")
                extracted = archive.extractfile(member)
                files[name] = extracted.read() if extracted is not None else b""
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise SpecRefused(f"source: not a readable archive ({exc})") from None
    return files
