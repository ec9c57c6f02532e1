"""Timeouts and cancels kill the whole process tree; output is cut at its limit, nothing lost below."""

from __future__ import annotations

import asyncio
import uuid

from duetime.objects.store import ObjectStore
from executor.command.output import StoredOutput
from executor.command.sandbox import Sandbox
from executor.command.spec import CommandSpec, Limits
from tests.sandbox.conftest import Collected, eventually, processes_with, sandbox_processes


def tree_that_would_outlive(token: str) -> CommandSpec:
    """A shell that starts a grandchild in a session of its own (no longer its child, out of its
    process group: what a daemonizing script does), says so, and waits forever."""
    grandchild = f"python3 -c 'import time; time.sleep(3600)' {token}"  # argv: [..., token]
    return CommandSpec(("sh", "-c", f"setsid sh -c \"{grandchild}\" & echo started; sleep 3600"),
                       timeout_seconds=3600)


async def test_timeout_kills_the_command_and_its_children(sandbox: Sandbox) -> None:
    token = f"grandchild-{uuid.uuid4().hex}"
    spec = tree_that_would_outlive(token)
    spec = CommandSpec(spec.argv, timeout_seconds=3)
    out = Collected()
    run = asyncio.create_task(sandbox.run(spec, out))
    await eventually(lambda: processes_with(token, "python3") != [])  # the grandchild runs
    outcome = await run
    assert (outcome.status, outcome.exit_code, outcome.signal) == ("timed_out", None, None)
    assert outcome.error == "timed out: the process tree was killed"
    assert out.text == "started\n"
    assert processes_with(token) == []
    assert sandbox_processes() == []


async def test_cancel_mid_run_kills_the_tree(sandbox: Sandbox) -> None:
    token = f"grandchild-{uuid.uuid4().hex}"
    out = Collected()
    cancel = asyncio.Event()
    run = asyncio.create_task(sandbox.run(tree_that_would_outlive(token), out, cancel))
    await out.arrived.wait()
    await eventually(lambda: processes_with(token, "python3") != [])
    cancel.set()
    outcome = await run
    assert (outcome.status, outcome.exit_code) == ("cancelled", None)
    assert processes_with(token) == []
    assert sandbox_processes() == []


async def test_a_cancelled_caller_takes_the_tree_along(sandbox: Sandbox) -> None:
    token = f"grandchild-{uuid.uuid4().hex}"
    out = Collected()
    run = asyncio.create_task(sandbox.run(tree_that_would_outlive(token), out))
    await eventually(lambda: processes_with(token, "python3") != [])
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert run.cancelled()
    await eventually(lambda: processes_with(token) == [] and sandbox_processes() == [])


async def test_a_caller_cancelled_while_the_sandbox_starts_leaves_nothing(sandbox: Sandbox) -> None:
    # Cancelled as soon as bwrap exists: before its PID 1 is set to die with it (bubblewrap
    # issue 633), maybe before the spawn returned a process at all.
    token = f"grandchild-{uuid.uuid4().hex}"
    run = asyncio.create_task(sandbox.run(tree_that_would_outlive(token), Collected()))
    await eventually(lambda: processes_with(token) != [])
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert run.cancelled()
    await eventually(lambda: processes_with(token) == [] and sandbox_processes() == [])


async def test_50_mb_of_output_is_cut_at_the_limit_and_what_is_kept_is_intact(
        sandbox: Sandbox, store: ObjectStore) -> None:
    """Streamed into each real store backend while the command runs."""
    # 50 blocks of 1 MiB, block i filled with byte i: any lost, repeated or shifted byte shows.
    script = ("import sys\nfor i in range(50):\n"
              "    sys.stdout.buffer.write(bytes([65 + i % 26]) * 1048576)\n")
    limit = 10 * 1024 * 1024 + 12345
    sink = StoredOutput(store, "t/j/r/1/output")
    outcome = await sandbox.run(CommandSpec(("python3", "-c", script),
                                            limits=Limits(output_bytes=limit)), sink)
    assert await sink.close() == limit
    assert outcome.status == "succeeded"
    assert (outcome.output_bytes, outcome.output_truncated) == (50 * 1024 * 1024, True)
    expected = b"".join(bytes([65 + i % 26]) * 1048576 for i in range(11))[:limit]
    stored = b"".join([chunk async for chunk in store.get("t/j/r/1/output")])
    assert stored == expected


async def test_output_at_exactly_the_limit_is_not_truncated(sandbox: Sandbox) -> None:
    out = Collected()
    outcome = await sandbox.run(CommandSpec(("printf", "12345"), limits=Limits(output_bytes=5)), out)
    assert (outcome.output_bytes, outcome.output_truncated, bytes(out.data)) == (5, False, b"12345")
    outcome = await sandbox.run(CommandSpec(("printf", "123456"), limits=Limits(output_bytes=5)), out)
    assert (outcome.output_bytes, outcome.output_truncated) == (6, True)
