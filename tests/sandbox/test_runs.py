"""Commands run, fail and hit their limits in the real sandbox."""

from __future__ import annotations

import signal

import pytest

from executor.command.sandbox import Sandbox
from executor.command.spec import CommandSpec, Limits, SpecRefused
from tests.sandbox.conftest import Collected, sandbox_processes


async def test_a_command_succeeds_with_its_output(sandbox: Sandbox) -> None:
    out = Collected()
    outcome = await sandbox.run(CommandSpec(("python3", "-c", "import sys; print('to stdout'); "
                                              "sys.stdout.flush(); sys.stderr.write('to stderr\\n')")), out)
    assert (outcome.status, outcome.exit_code, outcome.signal) == ("succeeded", 0, None)
    assert out.text == "to stdout\nto stderr\n"
    assert (outcome.output_bytes, outcome.output_truncated) == (len(out.data), False)
    assert sandbox_processes() == []


async def test_stdin_files_env_and_working_dir_reach_the_command(sandbox: Sandbox) -> None:
    out = Collected()
    spec = CommandSpec(("sh", "-c", 'cat; cat ../../data/in.txt; echo "$GREETING $(pwd) $(id -u)"; '
                        'test -z "$DUETIME_POSTGRES_DSN"'),
                       stdin=b"from stdin\n", files={"data/in.txt": "from a file\n"},
                       env={"GREETING": "hello"}, working_dir="src/app")
    outcome = await sandbox.run(spec, out)
    assert outcome.status == "succeeded", out.text
    assert out.text == "from stdin\nfrom a file\nhello /job/src/app 1000\n"


async def test_exit_3_is_a_failure_with_exit_code_3(sandbox: Sandbox) -> None:
    out = Collected()
    outcome = await sandbox.run(CommandSpec(("sh", "-c", "echo before; exit 3")), out)
    assert (outcome.status, outcome.exit_code, outcome.signal) == ("failed", 3, None)
    assert out.text == "before\n"


async def test_a_signal_is_recorded(sandbox: Sandbox) -> None:
    outcome = await sandbox.run(CommandSpec(("sh", "-c", "kill -TERM $$")), Collected())
    assert (outcome.status, outcome.signal) == ("failed", signal.SIGTERM)
    assert outcome.error == "killed by signal 15"


async def test_cpu_time_limit(sandbox: Sandbox) -> None:
    outcome = await sandbox.run(CommandSpec(("python3", "-c", "while True: pass"), timeout_seconds=60,
                                            limits=Limits(cpu_seconds=1)), Collected())
    assert (outcome.status, outcome.signal) == ("failed", signal.SIGXCPU)
    assert outcome.error == "CPU time limit exceeded"


async def test_file_size_limit(sandbox: Sandbox) -> None:
    out = Collected()
    spec = CommandSpec(("sh", "-c", "head -c 3000000 /dev/zero > big; echo $?; wc -c < big"),
                       limits=Limits(file_size_mb=1))
    outcome = await sandbox.run(spec, out)
    assert outcome.status == "succeeded"
    *_, status, size = out.text.split("\n")[:-1]  # after the shell's "File size limit exceeded"
    assert int(status) == 128 + signal.SIGXFSZ  # head was stopped by the limit
    assert int(size) == 1024 * 1024


async def test_memory_limit(sandbox: Sandbox) -> None:
    out = Collected()
    outcome = await sandbox.run(CommandSpec(("python3", "-c", "x = bytearray(600 * 1024 * 1024)"),
                                            limits=Limits(memory_mb=256)), out)
    assert (outcome.status, outcome.exit_code) == ("failed", 1)
    assert "MemoryError" in out.text


@pytest.mark.parametrize(("spec", "message"), [
    (CommandSpec(()), "1 to 4096 arguments"),
    (CommandSpec(("echo", "a\0b")), "NUL"),
    (CommandSpec(("true",), env={"A=B": "x"}), "env name"),
    (CommandSpec(("true",), env={"A": "x\0"}), "NUL"),
    (CommandSpec(("true",), files={"../escape": "x"}), "relative path"),
    (CommandSpec(("true",), files={"/etc/passwd": "x"}), "relative path"),
    (CommandSpec(("true",), files={"a//b": "x"}), "relative path"),
    (CommandSpec(("true",), files={"a": "x", "a/b": "y"}), "is a file"),
    (CommandSpec(("true",), working_dir="../.."), "relative path"),
    (CommandSpec(("true",), working_dir="/usr"), "relative path"),
    (CommandSpec(("true",), timeout_seconds=0), "timeout_seconds"),
    (CommandSpec(("true",), limits=Limits(memory_mb=0)), "limits.memory_mb"),
    (CommandSpec(("true",), limits=Limits(processes=2)), "limits.processes"),
    (CommandSpec(("true",), network=True, limits=Limits(memory_mb=31)), "limits.memory_mb >= 32"),
])
async def test_refused_commands_start_nothing(sandbox: Sandbox, spec: CommandSpec, message: str) -> None:
    out = Collected()
    with pytest.raises(SpecRefused, match=message):
        await sandbox.run(spec, out)
    assert out.data == b""
    assert sandbox_processes() == []
