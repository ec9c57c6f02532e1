"""supervisord keeps the services running (ADR 0034): a crash nobody asked for is restarted by
itself and the pipeline goes on firing; `stack.sh kill` is a crash that stays down until
`stack.sh start`, as the fault tests and the model checker's nemesis need."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest
from typer.testing import CliRunner

from duetime.console.app import app
from tests.support.jobs import create, http_job
from tests.support.sink import Sink
from tests.support.stack import (
    RUN_DIR,
    SERVICES,
    service_pid,
    service_port,
    stack,
    supervised_state,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.skipif(os.environ.get("DUETIME_TEST_ENGINE") == "containers",
                                reason="the compose stack has no supervisord (its containers restart)")

# Longer than supervisord takes to start a crashed service again (its 1 s tick plus the 1 s
# backoff of a service that crashed within a minute of its start; see supervised_service.py).
RESTART_WINDOW = 6.0


@pytest.mark.parametrize("service", ["writer", "executor"])
async def test_a_service_killed_behind_the_stacks_back_comes_back_and_jobs_fire(
    api: httpx.AsyncClient, sink: Sink, path: str, service: str
) -> None:
    old = service_pid(service)
    assert old is not None, f".stack/run/{service}.pid names no live {service}"
    os.kill(old, signal.SIGKILL)  # a crash: not through stack.sh

    async def restarted() -> int | None:
        pid = service_pid(service)
        return pid if pid is not None and pid != old else None

    new = await eventually(restarted, timeout=60, interval=0.2)
    assert await eventually(lambda: _state_is(service, "RUNNING"), timeout=30)
    # Ready: the Kafka group may wait out the killed member's session first.
    url = f"http://127.0.0.1:{service_port(service)}/readyz"
    async with httpx.AsyncClient(timeout=5) as client:
        assert await eventually(lambda: _answers(client, url), timeout=90, interval=0.5)
    # The whole path through the restarted process: persisted by the writer, run by the executor.
    await create(api, http_job(sink.url(path), {"type": "delay", "seconds": 1}))
    assert len(await sink.wait_for(path, 1, timeout=30)) == 1
    assert service_pid(service) == new  # the run went through it, and it stayed up


async def test_stack_kill_keeps_a_service_down_until_stack_start(
    api: httpx.AsyncClient, sink: Sink, path: str, capfd: pytest.CaptureFixture[str]
) -> None:
    await asyncio.to_thread(stack, "kill", "dispatcher")
    try:
        await create(api, http_job(sink.url(path), {"type": "delay", "seconds": 1}))
        await asyncio.sleep(RESTART_WINDOW)
        assert await asyncio.to_thread(supervised_state, "dispatcher") == "STOPPED"
        assert service_pid("dispatcher") is None
        assert not (RUN_DIR / "dispatcher.pid").exists()
        assert sink.hits_for(path) == []  # nothing dispatches: it is really down
        capfd.readouterr()
        assert CliRunner().invoke(app, ["stack", "status"]).exit_code == 1
        assert _status_lines(capfd.readouterr().out)["dispatcher"][:2] == ["dispatcher", "stopped"]
    finally:
        await asyncio.to_thread(stack, "start", "dispatcher")
    assert service_pid("dispatcher") is not None
    assert len(await sink.wait_for(path, 1, timeout=30)) == 1


async def test_stack_stop_keeps_a_service_down_until_stack_start() -> None:
    await asyncio.to_thread(stack, "stop", "watcher")
    try:
        await asyncio.sleep(RESTART_WINDOW)
        assert await asyncio.to_thread(supervised_state, "watcher") == "STOPPED"
        assert service_pid("watcher") is None
    finally:
        await asyncio.to_thread(stack, "start", "watcher")
    assert await asyncio.to_thread(supervised_state, "watcher") == "RUNNING"
    assert service_pid("watcher") is not None


def test_duetime_stack_status_shows_every_service_supervised(
    env: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    assert CliRunner().invoke(app, ["stack", "status"]).exit_code == 0
    lines = _status_lines(capfd.readouterr().out)
    assert lines["supervisord"][1] == "running"
    for service in SERVICES:
        assert lines[service][1] == "running" and lines[service][-2:] == ["supervisord:", "RUNNING"]


def _status_lines(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}


async def _answers(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


async def _state_is(instance: str, state: str) -> bool:
    return await asyncio.to_thread(supervised_state, instance) == state
