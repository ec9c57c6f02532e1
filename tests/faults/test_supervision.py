"""supervisord keeps the services running (ADR 0034): a crash nobody asked for is restarted by
itself and the pipeline goes on firing; `stack.sh kill` is a crash that stays down until
`stack.sh start`, as the fault tests and the model checker's nemesis need."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from duetime.console.app import app
from tests.support.jobs import create, http_job
from tests.support.sink import Sink
from tests.support.stack import (
    ROOT,
    RUN_DIR,
    SERVICES,
    STACK,
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


async def test_a_hung_service_is_killed_and_started_again(
    api: httpx.AsyncClient, sink: Sink, path: str
) -> None:
    """The dispatcher hangs (SIGSTOP: alive, answering nothing): the liveness listener
    (deploy/local/liveness.py) kills it after ~30 s without an answer to /healthz, supervisord
    starts it again, and firing goes on — nobody had to notice."""
    old = service_pid("dispatcher")
    assert old is not None
    await create(api, http_job(sink.url(path), {"type": "delay", "seconds": 1}))
    os.kill(old, signal.SIGSTOP)

    async def restarted() -> int | None:
        pid = service_pid("dispatcher")
        return pid if pid is not None and pid != old else None

    try:
        new = await eventually(restarted, timeout=90, interval=0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(old, signal.SIGCONT)  # if the listener did not kill it, the test failed
    with pytest.raises(ProcessLookupError):
        os.kill(old, 0)
    assert len(await sink.wait_for(path, 1, timeout=30)) == 1  # due while hung: fired late
    assert service_pid("dispatcher") == new  # and it stayed up
    lines = (ROOT / ".stack" / "logs" / "liveness.log").read_text().splitlines()
    assert any(f'"pid": {old}' in line and '"instance": "dispatcher"' in line for line in lines)


async def test_a_service_that_keeps_crashing_is_restarted_later_each_time() -> None:
    """Three crashes within a minute of each start: supervised_service.py waits 1, 2, then 4 s
    before starting it again (Kubernetes' CrashLoopBackOff, scaled down); `stack.sh status`
    says it is restarting meanwhile."""
    await asyncio.to_thread(stack, "restart", "watcher")  # a start by hand: no backoff yet
    log = ROOT / ".stack" / "logs" / "watcher.log"
    offset = log.stat().st_size
    for _ in range(3):
        pid = await eventually(lambda: _alive("watcher"), timeout=60, interval=0.1)
        os.kill(pid, signal.SIGKILL)
        await eventually(functools.partial(_replaced, "watcher", pid), timeout=10, interval=0.05)
    await eventually(lambda: _backoff_lines(log, offset, 3), timeout=30, interval=0.2)
    status = await asyncio.to_thread(
        subprocess.run, [str(STACK), "status", "watcher"], capture_output=True, text=True, timeout=60)
    assert _backoff_lines_now(log, offset) == [("1", "1"), ("2", "2"), ("3", "4")]
    assert status.returncode == 1 and status.stdout.split()[:2] == ["watcher", "restarting"]
    await eventually(lambda: _alive("watcher"), timeout=60, interval=0.2)


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


BACKOFF_LINE = re.compile(r"watcher exited after less than 60 s of running, (\d+) time\(s\) in a row: "
                          r"starting it again in (\d+) s")


def _backoff_lines_now(log: Path, offset: int) -> list[tuple[str, str]]:
    with log.open("rb") as f:
        f.seek(offset)
        return BACKOFF_LINE.findall(f.read().decode(errors="replace"))


async def _backoff_lines(log: Path, offset: int, count: int) -> bool:
    return len(_backoff_lines_now(log, offset)) >= count


async def _alive(instance: str) -> int | None:
    return service_pid(instance)


async def _replaced(instance: str, pid: int) -> bool:
    return service_pid(instance) != pid


async def _answers(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


async def _state_is(instance: str, state: str) -> bool:
    return await asyncio.to_thread(supervised_state, instance) == state
