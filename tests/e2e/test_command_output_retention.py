"""Command output past its retention (ADR 0038): the sweep removes the run's objects from the
stack's store, and reading them back is a 410 problem, not a 404 and not an empty 200.

Needs the command executor (`DUETIME_COMMAND_EXECUTOR=1 make up`, or started here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from duetime.objects.filesystem import FilesystemStore
from duetime.objects.retention import Swept, remove_expired_output
from tests.support.commands import command_executor
from tests.support.jobs import Cleanup, wait_runs
from tests.support.stack import ROOT

# Alone (ADR 0053): its module starts the stack's command executor and stops it after, which
# would pull it from under another process's command-job tests.
pytestmark = pytest.mark.alone

STORE = ROOT / ".stack" / "objects"


@pytest.fixture(autouse=True)
async def executor() -> AsyncIterator[None]:
    async with command_executor():
        yield


async def expire(job_id: str) -> Swept:
    """The sweep, as if its retention had passed, for this job's output only."""
    async with FilesystemStore(STORE) as store:
        tenants = {info.key.split("/")[0] for info in await store.list("")
                   if info.key.split("/")[1] == job_id}
        [tenant] = tenants
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        return await remove_expired_output(store, tomorrow, f"{tenant}/{job_id}/")


def assert_gone(resp: httpx.Response) -> None:
    assert resp.status_code == 410, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "no longer kept" in resp.json()["detail"]


async def test_expired_output_reads_as_410(api: httpx.AsyncClient, jobs: Cleanup) -> None:
    job_id = await jobs.create(api, {
        "name": "retention-e2e", "schedule": {"type": "now"}, "retry": {"max_attempts": 1},
        "target": {"type": "steps", "steps": [{"name": "hello", "run": "echo hello"},
                                               {"name": "fails", "run": "exit 4"},
                                               {"name": "never", "run": "echo never"}]}})
    [run] = await wait_runs(api, job_id, "failed", timeout=40)
    path = f"/runs/{run['run_id']}/output"
    assert (await api.get(path, params={"step": "hello"})).text == "hello\n"
    # The whole output, two steps' (the third never ran).
    assert await expire(job_id) == Swept(3, 2 * len("hello\n"))
    assert_gone(await api.get(path))
    assert_gone(await api.get(path, params={"attempt": 1}))
    assert_gone(await api.get(path, params={"step": "hello"}))
    assert_gone(await api.get(path, headers={"Range": "bytes=0-1"}))
    assert_gone(await api.get(f"/jobs/{job_id}/logs"))
    # What was never stored is still a 404, and bad input still a 422.
    assert (await api.get(path, params={"step": "never"})).status_code == 404
    assert (await api.get(path, params={"attempt": 2})).status_code == 404
    assert (await api.get(path, params={"attempt": 0})).status_code == 422
    assert (await api.get(path, params={"step": "../x"})).status_code == 422
