"""`network: true` through the whole pipeline (ADR 0038): a command job reaches an allowed sink
through its run's egress proxy; a steps job aimed at the stack's own Redis is refused with the
egress reason, in its output and on its run.

Needs the command executor (`DUETIME_COMMAND_EXECUTOR=1 make up`, or started here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.commands import command_executor
from tests.support.jobs import Cleanup, wait_runs
from tests.support.sink import Sink

# Alone (ADR 0053): its module starts the stack's command executor and stops it after, which
# would pull it from under another process's command-job tests.
pytestmark = pytest.mark.alone

FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
# The sink is on the host's loopback: reachable only through the proxy, not the run's own lo.
THROUGH_PROXY = {"NO_PROXY": "", "no_proxy": ""}


@pytest.fixture(autouse=True)
async def executor() -> AsyncIterator[None]:
    async with command_executor():
        yield


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    sink = await Sink(answer_for=lambda hit: f"hello {hit.path}").start()
    yield sink
    await sink.stop()


def job(target: dict[str, object]) -> dict[str, object]:
    return {"name": "net-e2e", "schedule": {"type": "now"}, "retry": {"max_attempts": 1},
            "target": {"network": True, "env": THROUGH_PROXY, **target}}


async def test_a_command_with_network_reaches_the_allowed_sink(
    api: httpx.AsyncClient, jobs: Cleanup, sink: Sink,
) -> None:
    job_id = await jobs.create(api, job({"type": "command", "command": [
        "python3", "-c", FETCH, sink.url("/from-a-job")]}))
    run = (await wait_runs(api, job_id, "succeeded", timeout=40))[0]
    resp = await api.get(f"/runs/{run['run_id']}/output")
    assert resp.status_code == 200, resp.text
    assert resp.text == "hello /from-a-job\n"
    assert len(sink.hits_for("/from-a-job")) == 1


async def test_a_steps_job_cannot_reach_the_stacks_redis(
    api: httpx.AsyncClient, jobs: Cleanup, env: dict[str, str],
) -> None:
    port = urlsplit(env["DUETIME_REDIS_URL"]).port
    job_id = await jobs.create(api, job({"type": "steps", "steps": [
        {"name": "probe", "run": f"python3 -c '{FETCH}' http://127.0.0.1:{port}/"}]}))
    run = (await wait_runs(api, job_id, "failed", timeout=40))[0]
    assert run["error"] == ("the command exited with code 1; connections blocked by egress "
                            "policy: loopback address"), run
    resp = await api.get(f"/runs/{run['run_id']}/output", params={"step": "probe"})
    assert resp.status_code == 200, resp.text
    assert "HTTP Error 403: blocked by egress policy: loopback address" in resp.text
