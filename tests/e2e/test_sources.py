"""A tenant's sources through the gateway (duetime.objects.sources): a script uploaded with
PUT /sources/{path} is what a command job names in `source.object` (seed 001), listed, read
back, replaced and deleted by its tenant only; bad paths and bodies are refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.commands import command_executor
from tests.support.jobs import Cleanup, wait_runs

# Alone (ADR 0053): its module starts the stack's command executor and stops it after, which
# would pull it from under another process's command-job tests.
pytestmark = pytest.mark.alone


@pytest.fixture
async def folder(api: httpx.AsyncClient, api_b: httpx.AsyncClient) -> AsyncIterator[str]:
    """A folder of the test's own under the tenant's sources; emptied after."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    for client in (api, api_b):
        listed = (await client.get("/sources", params={"prefix": f"{name}/"})).json()["items"]
        for item in listed:
            await client.delete(f"/sources/{item['path']}")


async def test_an_uploaded_script_runs_as_a_jobs_source(
    api: httpx.AsyncClient, jobs: Cleanup, folder: str,
) -> None:
    script = b"import sys; print('report for', sys.argv[1])\n"
    put = await api.put(f"/sources/{folder}/report.py", content=script)
    assert put.status_code == 201, put.text
    assert put.json() == {"path": f"{folder}/report.py", "size": len(script)}
    async with command_executor():
        job_id = await jobs.create(api, {
            "name": "seed-001", "schedule": {"type": "interval", "every_seconds": 2},
            "max_runs": 1, "retry": {"max_attempts": 1},
            "target": {"type": "command", "command": ["python3", "report.py", "today"],
                       "source": {"object": f"{folder}/report.py"}}})
        (run,) = await wait_runs(api, job_id, "succeeded", count=1, timeout=40)
    out = await api.get(f"/runs/{run['run_id']}/output")
    assert (out.status_code, out.content) == (200, b"report for today\n")


async def test_list_read_replace_and_delete_by_the_owner_only(
    api: httpx.AsyncClient, api_b: httpx.AsyncClient, folder: str,
) -> None:
    path = f"{folder}/lib/util.sh"
    assert (await api.put(f"/sources/{path}", content=b"echo 1\n")).status_code == 201
    replaced = await api.put(f"/sources/{path}", content=b"echo 22\n")
    assert (replaced.status_code, replaced.json()["size"]) == (200, 8)
    listed = (await api.get("/sources", params={"prefix": f"{folder}/"})).json()["items"]
    assert listed == [{"path": path, "size": 8}]
    got = await api.get(f"/sources/{path}")
    assert (got.status_code, got.content) == (200, b"echo 22\n")
    assert got.headers["content-type"] == "application/octet-stream"
    # Another tenant: not listed, not readable, not deletable, and its own path is its own.
    assert (await api_b.get("/sources", params={"prefix": f"{folder}/"})).json()["items"] == []
    assert (await api_b.get(f"/sources/{path}")).status_code == 404
    assert (await api_b.delete(f"/sources/{path}")).status_code == 404
    assert (await api_b.put(f"/sources/{path}", content=b"echo b\n")).status_code == 201
    assert (await api.get(f"/sources/{path}")).content == b"echo 22\n"
    assert (await api.delete(f"/sources/{path}")).status_code == 204
    assert (await api.get(f"/sources/{path}")).status_code == 404
    assert (await api.delete(f"/sources/{path}")).status_code == 404


@pytest.mark.parametrize("path", [
    ".hidden", "a/.b", "a/%2e%2e/b", "a//b", "a/b/", "-x", "a" * 201, "/".join(["a"] * 17),
    "a%00b", "a b", "%C3%A9t%C3%A9",
])
async def test_bad_paths_are_refused_naming_the_path(api: httpx.AsyncClient, path: str) -> None:
    for resp in (await api.put(f"/sources/{path}", content=b"x"),
                 await api.get(f"/sources/{path}"), await api.delete(f"/sources/{path}")):
        assert resp.status_code in (400, 404, 422), resp.text  # 400: nginx refuses a NUL
        if resp.status_code == 422:
            assert resp.json()["errors"][0]["field"] == "path"
    assert (await api.put(f"/sources/{path}", content=b"x")).status_code in (400, 422)


async def test_bad_bodies_and_parameters(api: httpx.AsyncClient, anonymous: httpx.AsyncClient,
                                         folder: str) -> None:
    too_big = await api.put(f"/sources/{folder}/big.bin", content=b"x" * (256 * 1024 + 1))
    assert too_big.status_code == 413
    assert (await api.get(f"/sources/{folder}/big.bin")).status_code == 404  # nothing kept
    empty = await api.put(f"/sources/{folder}/empty.txt", content=b"")
    assert (empty.status_code, empty.json()["size"]) == (201, 0)
    bad = await api.get("/sources", params={"prefix": "../x"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "prefix"
    assert (await anonymous.put(f"/sources/{folder}/x", content=b"x")).status_code == 401
    assert (await anonymous.get("/sources")).status_code == 401
