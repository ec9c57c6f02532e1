"""What a sandboxed command must not reach: the network, the host's files, other processes."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from executor.command.sandbox import Sandbox
from executor.command.spec import CommandSpec, Limits
from tests.sandbox.conftest import Collected, sandbox_processes
from tests.support.stack import ROOT


async def run(sandbox: Sandbox, script: str, **options: object) -> tuple[str, str]:
    out = Collected()
    outcome = await sandbox.run(CommandSpec(("python3", "-c", script), **options), out)  # type: ignore[arg-type]
    return outcome.status, out.text


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[str]]]:
    """A TCP server on the host's loopback that records every connection it gets."""
    connections: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, connections


async def test_no_network(sandbox: Sandbox, listener: tuple[int, list[str]]) -> None:
    port, connections = listener
    status, text = await run(sandbox, f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=5)
    print("connected")
except OSError as exc:
    print(type(exc).__name__)
print(sorted(name for _, name in socket.if_nameindex()))
""")
    assert status == "succeeded"
    assert text == "ConnectionRefusedError\n['lo']\n"  # its own loopback, nothing behind it
    assert connections == []


async def test_writing_outside_its_directory_fails(sandbox: Sandbox) -> None:
    token = uuid.uuid4().hex
    targets = [f"/usr/{token}", f"/{token}", f"/etc/{token}", "/etc/passwd", f"/bin/{token}",
               f"/proc/{token}", f"/job/../{token}"]
    status, text = await run(sandbox, f"""
for path in {targets!r}:
    try:
        open(path, "w").write("x")
        print(path, "written")
    except OSError as exc:
        print(path, type(exc).__name__)
open("/tmp/{token}", "w").write("private")
open("/job/{token}", "w").write("its own")
print("own files written")
""")
    assert status == "succeeded"
    assert "written\n" not in text.replace("own files written\n", ""), text
    assert text.endswith("own files written\n")
    for path in (f"/usr/{token}", f"/{token}", f"/etc/{token}", f"/bin/{token}", f"/tmp/{token}"):
        assert not Path(path).exists()


async def test_the_stacks_files_and_the_project_are_invisible(sandbox: Sandbox) -> None:
    stack = ROOT / ".stack"
    stack.mkdir(exist_ok=True)
    secret = stack / f"sandbox-test-{uuid.uuid4().hex}"
    secret.write_text("a credential")
    try:
        status, text = await run(sandbox, f"""
import os
for path in [{str(secret)!r}, {str(ROOT)!r}, "/work", "/root", "/var/run/postgresql", "/run"]:
    try:
        print(path, os.listdir(path) if os.path.isdir(path) else open(path).read())
    except OSError as exc:
        print(path, type(exc).__name__)
""")
    finally:
        secret.unlink()
    assert status == "succeeded", text
    assert "a credential" not in text
    assert text.count("FileNotFoundError") == 6, text


async def test_signalling_a_process_outside_fails(sandbox: Sandbox) -> None:
    outside = subprocess.Popen(["sleep", "600"])
    try:
        status, text = await run(sandbox, f"""
import os, signal
for pid in ({outside.pid}, 1, -1):
    try:
        os.kill(pid, signal.SIGKILL)
        print(pid, "signalled")
    except OSError as exc:
        print(pid, type(exc).__name__)
""")
        assert outside.poll() is None  # still running
    finally:
        outside.kill()
        outside.wait()
    # Its pid does not exist in the sandbox's PID namespace; PID 1 there is the sandbox's own
    # reaper, which ignores a signal it has no handler for; -1 reaches only the sandbox.
    assert status == "succeeded"
    assert text.splitlines()[0] == f"{outside.pid} ProcessLookupError"


async def test_a_fork_bomb_is_contained(sandbox: Sandbox) -> None:
    limit = 32
    seen: list[int] = []
    bomb = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""
    run_task = asyncio.create_task(run(sandbox, bomb, timeout_seconds=4, limits=Limits(processes=limit)))
    while not run_task.done():
        seen.append(len(sandbox_processes()))
        await asyncio.sleep(0.05)
    status, text = run_task.result()
    assert status == "timed_out", text
    assert max(seen) > limit // 2  # it did fork...
    assert max(seen) <= limit      # ...up to the limit only
    assert sandbox_processes() == []
    # The box survived: the host still starts processes.
    assert subprocess.run(["true"], check=False).returncode == 0


async def test_two_runs_cannot_see_each_other(sandbox: Sandbox) -> None:
    token = uuid.uuid4().hex
    first_out = Collected()
    first = asyncio.create_task(sandbox.run(CommandSpec(
        ("sh", "-c", f"echo {token} > mine.txt; echo ready; sleep 3600"), timeout_seconds=3600),
        first_out))
    await first_out.arrived.wait()
    try:
        status, text = await run(sandbox, """
import os
others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]
print([open(f"/proc/{p}/cmdline", "rb").read().split(b"\\0")[0].decode() for p in others])
print(sorted(os.listdir("/job")))
""")
    finally:
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
    assert status == "succeeded"
    # Besides itself only its PID 1 (bwrap's reaper): nothing of the other run; its own /job.
    assert text == f"[{sandbox.bwrap!r}]\n[]\n"
    assert sandbox_processes() == []


async def test_no_user_namespace_inside(sandbox: Sandbox) -> None:
    # `unshare -r` would make the command root of a namespace of its own, with kernel
    # interfaces (mounts, netfilter, …) to attack.
    out = Collected()
    outcome = await sandbox.run(CommandSpec(("sh", "-c", "unshare -Ur id -u; echo $?")), out)
    assert outcome.status == "succeeded"
    assert out.text.splitlines()[-1] == "1", out.text
    assert "\n0\n" not in f"\n{out.text}"
