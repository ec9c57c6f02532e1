"""A tenant's sources are bounded in number and size (job_service.sources), in process."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI, Request

from duetime.objects.filesystem import FilesystemStore
from duetime.problems import install
from job_service.sources import SourceRoutes


async def test_a_tenant_has_a_bounded_number_and_size_of_sources(tmp_path: Path) -> None:
    """The caps, in process (a thousand uploads through the gateway would only be slow)."""
    app = FastAPI()
    install(app)

    @app.middleware("http")
    async def as_tenant(request: Request, call_next):  # type: ignore[no-untyped-def]
        request.state.tenant = "t1"
        return await call_next(request)

    store = FilesystemStore(str(tmp_path))
    app.include_router(SourceRoutes(store, max_sources=2, max_bytes=10).router())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://in-process") as client:
        assert (await client.put("/sources/a", content=b"12345")).status_code == 201
        assert (await client.put("/sources/b", content=b"123")).status_code == 201
        full = await client.put("/sources/c", content=b"1")
        assert full.status_code == 409 and "at most 2" in full.json()["detail"]
        assert (await client.put("/sources/b", content=b"12345")).status_code == 200  # replaced
        over = await client.put("/sources/b", content=b"123456")
        assert over.status_code == 413
        kept = b"".join([chunk async for chunk in store.get("t1/sources/b")])
        assert kept == b"12345"  # the refused upload left the stored one as it was
