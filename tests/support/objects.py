"""Object store fixtures: each real backend, the filesystem and S3 (S3Proxy on loopback)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from duetime.objects.filesystem import FilesystemStore
from duetime.objects.s3 import S3Store
from duetime.objects.store import ObjectStore
from tests.support.s3proxy import s3proxy


@pytest.fixture(scope="session")
def s3_settings() -> Iterator[dict[str, str]]:
    with s3proxy() as settings:
        yield settings


@pytest.fixture(params=["filesystem", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    """An empty store of the test's own: a fresh directory, or a fresh prefix of the bucket."""
    if request.param == "filesystem":
        backend: ObjectStore = FilesystemStore(tmp_path / "objects")
    else:
        settings: dict[str, str] = request.getfixturevalue("s3_settings")
        backend = S3Store(settings["DUETIME_OBJECTS_BUCKET"],
                          endpoint=settings["DUETIME_OBJECTS_ENDPOINT"],
                          access_key_id=settings["DUETIME_OBJECTS_ACCESS_KEY_ID"],
                          secret_access_key=settings["DUETIME_OBJECTS_SECRET_ACCESS_KEY"],
                          prefix=f"test-{uuid.uuid4().hex[:12]}")
    async with backend:
        yield backend
