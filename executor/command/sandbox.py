"""Runs one command in a bubblewrap sandbox, streaming its output, within its limits (ADR 0026).

The sandbox sees a read-only /usr (and the /bin, /lib symlinks into it), a handful of /etc
files, a private /proc, /dev and /tmp, and its own directory /job — nothing of the host's other
files, the stack's state or its sockets. It has its own network namespace with nothing but
`lo`; with `network: true` a relay there hands connections to the run's egress proxy, the only
way out (ADR 0038). Its own PID, IPC and UTS namespaces, no capabilities, and runs as uid 1000
inside, mapped to a host uid of its own (`uids.py`). The whole tree dies with it: the executor
kills bwrap, bwrap's child is PID 1 of the sandbox's PID namespace and dies with its parent
(--die-with-parent), and the kernel kills every process of a PID namespace whose PID 1 dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from executor.command.egress_proxy import EgressProxy
from executor.command.output import LimitedOutput, OutputSink
from executor.command.spec import CommandSpec, SpecRefused, relative_path
from executor.command.uids import UidPool, can_switch_uid, processes_of
from executor.egress import EgressPolicy

log = logging.getLogger(__name__)
Status = Literal["succeeded", "failed", "timed_out", "cancelled"]
INSIDE_UID = 1000
HOME = "/job"
# /usr/local/go/bin: where Go's own installer puts the toolchain (seed 003's jobs build Go
# modules); a directory that does not exist on a host costs nothing.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/local/go/bin:/usr/sbin:/usr/bin:/sbin:/bin"
READ_CHUNK = 64 * 1024
# After the command exits: how long its output may still take to reach the sink (a slow store).
DRAIN_SECONDS = 30.0
# Host files a program commonly needs and that say nothing about the host: the loader's cache,
# Debian's alternatives symlinks, time zones, TLS roots. Nothing else of /etc is visible.
ETC_FROM_HOST = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime",
                 "ssl", "ca-certificates", "mime.types", "protocols", "services")
# `network: true`: the relay (run by the host's python3, seen read-only through /usr) listens on
# the sandbox's own loopback and the proxy's socket is bound next to it (ADR 0038).
PYTHON = "/usr/bin/python3"
RELAY = Path(__file__).with_name("relay.py")
NET_DIR = "/run/duetime"
PROXY_PORT = 3128
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
PROXY_ENV = {name: PROXY_URL for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                          "http_proxy", "https_proxy", "all_proxy")} | {
    "NO_PROXY": "localhost,127.0.0.1,::1", "no_proxy": "localhost,127.0.0.1,::1"}
_SIGNAL_ERRORS = {signal.SIGXCPU: "CPU time limit exceeded",
                  signal.SIGXFSZ: "file size limit exceeded"}


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DUETIME_SANDBOX_", extra="ignore")

    bwrap: str = "bwrap"
    # Each run's directory is created here (mode 0711 so the run's uid can reach only its own);
    # it must be the executor's own directory, never one another user could have made.
    scratch_dir: str = "/var/tmp/duetime-sandbox"  # noqa: S108 - checked in Sandbox.__init__
    # Host uids first_uid .. first_uid+slots-1: none may belong to anything else (ADR 0026).
    first_uid: int = Field(default=200_000, ge=1000)
    slots: int = Field(default=32, ge=1, le=10_000)


@dataclass(frozen=True)
class Outcome:
    status: Status
    exit_code: int | None
    signal: int | None
    output_bytes: int
    output_truncated: bool
    duration_ms: int
    error: str | None = None
    # Why the egress proxy refused connections of the run (the first 10 reasons).
    egress_refused: tuple[str, ...] = ()


class Sandbox:
    """Runs commands, each in a fresh sandbox; at most `slots` at once."""

    def __init__(self, settings: SandboxSettings | None = None,
                 egress: EgressPolicy | None = None) -> None:
        self.settings = settings or SandboxSettings()
        self.egress = egress or EgressPolicy()
        bwrap = shutil.which(self.settings.bwrap)
        if bwrap is None:
            raise RuntimeError(f"bubblewrap ({self.settings.bwrap!r}) is not installed: "
                               "apt-get install bubblewrap (deploy/local/stack.sh deps does)")
        self.bwrap = bwrap
        self.prlimit = shutil.which("prlimit") or "prlimit"
        self.switch_uid = can_switch_uid()
        # Without root every run shares the executor's own uid: the process limit then counts
        # the executor's processes too, and runs are not apart from each other (ADR 0026).
        self.uids = UidPool(self.settings.first_uid if self.switch_uid else os.getuid(),
                            self.settings.slots if self.switch_uid else 1)
        self.scratch = Path(self.settings.scratch_dir)
        self.scratch.mkdir(parents=True, exist_ok=True, mode=0o711)
        found = self.scratch.lstat()
        if self.scratch.is_symlink() or found.st_uid != os.geteuid():
            raise RuntimeError(f"{self.scratch} is not a directory of this user's own")
        self.scratch.chmod(0o711)

    async def run(self, spec: CommandSpec, sink: OutputSink,
                  cancel: asyncio.Event | None = None) -> Outcome:
        """Runs `spec` to its end, its timeout or `cancel`; raises SpecRefused before starting
        anything when the command is not one the sandbox runs."""
        spec.check()
        if spec.network and not Path(PYTHON).is_file():
            raise SpecRefused(f"network: true needs {PYTHON} on the executor's host (ADR 0038)")
        uid = await self.uids.acquire()
        run_dir = self.scratch / secrets.token_hex(12)
        proxy: EgressProxy | None = None
        try:
            await asyncio.to_thread(self._prepare, run_dir, spec, uid)
            if spec.network:
                proxy = await self._start_proxy(run_dir, uid)
            ended = await self._execute(spec, run_dir, uid, sink, cancel or asyncio.Event())
            return ended if proxy is None else replace(ended, egress_refused=tuple(proxy.refused))
        finally:
            # Also what a cancel while bwrap was starting left behind.
            await self._kill_uid(uid)
            if proxy is not None:
                await proxy.close()
            released = await self.uids.release(uid)
            if released:
                await asyncio.to_thread(shutil.rmtree, run_dir, True)

    # -- preparing the run's directory ----------------------------------------------------

    def _prepare(self, run_dir: Path, spec: CommandSpec, uid: int) -> None:
        run_dir.mkdir(mode=0o711)
        home = run_dir / "home"
        home.mkdir(mode=0o700)
        self._own(home, uid)
        etc = run_dir / "etc"
        etc.mkdir(mode=0o755)
        (etc / "passwd").write_text(f"sandbox:x:{INSIDE_UID}:{INSIDE_UID}::{HOME}:/bin/sh\n"
                                    "nobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n")
        (etc / "group").write_text(f"sandbox:x:{INSIDE_UID}:\nnogroup:x:65534:\n")
        (etc / "hosts").write_text("127.0.0.1 localhost sandbox\n::1 localhost\n")
        (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files dns\n")
        for name, content in spec.files.items():
            self._write_file(home, name, content, uid)
        if spec.working_dir:
            self._make_dirs(home, relative_path(spec.working_dir, "working_dir").parts, uid)

    async def _start_proxy(self, run_dir: Path, uid: int) -> EgressProxy:
        """The run's egress proxy, on a socket only the run's uid may connect to."""
        proxy = EgressProxy(self.egress, run_dir / "proxy.sock", run=run_dir.name)
        await proxy.start()
        proxy.path.chmod(0o600)
        self._own(proxy.path, uid)
        return proxy

    def _own(self, path: Path | int, uid: int) -> None:
        if self.switch_uid:
            os.chown(path, uid, uid, follow_symlinks=False) if isinstance(path, Path) \
                else os.fchown(path, uid, uid)

    def _make_dirs(self, home: Path, parts: tuple[str, ...], uid: int) -> Path:
        current = home
        for part in parts:
            current = current / part
            if current.is_symlink() or (current.exists() and not current.is_dir()):
                raise SpecRefused(f"{'/'.join(parts)!r}: {part!r} is a file, not a directory")
            if not current.exists():
                current.mkdir(mode=0o755)
                self._own(current, uid)
        return current

    def _write_file(self, home: Path, name: str, content: str | bytes, uid: int) -> None:
        path = relative_path(name, "files")
        parent = self._make_dirs(home, path.parts[:-1], uid)
        data = content.encode() if isinstance(content, str) else content
        try:
            fd = os.open(parent / path.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o644)
        except (FileExistsError, IsADirectoryError):
            raise SpecRefused(f"files: {name!r} is given twice or is also a directory") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            self._own(handle.fileno(), uid)

    # -- running ---------------------------------------------------------------------------

    def argv(self, spec: CommandSpec, run_dir: Path) -> list[str]:
        """prlimit (the run's rlimits) exec'ing bwrap (the namespaces and mounts)."""
        limits = spec.limits
        mib = 1024 * 1024
        rlimits = [f"--as={limits.memory_mb * mib}",
                   f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
                   f"--nproc={limits.processes}", f"--fsize={limits.file_size_mb * mib}",
                   f"--nofile={limits.open_files}", "--core=0"]
        cwd = f"{HOME}/{spec.working_dir}" if spec.working_dir else HOME
        mounts = ["--ro-bind", "/usr", "/usr",
                  "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
                  "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                  "--proc", "/proc", "--dev", "/dev",
                  "--size", str(limits.tmp_mb * mib), "--perms", "1777", "--tmpfs", "/tmp",  # noqa: S108 - the sandbox's own
                  "--dir", "/etc"]
        for name in ETC_FROM_HOST:
            mounts += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        for name in ("passwd", "group", "hosts", "nsswitch.conf"):
            mounts += ["--ro-bind", str(run_dir / "etc" / name), f"/etc/{name}"]
        mounts += ["--bind", str(run_dir / "home"), HOME]
        argv: tuple[str, ...] = spec.argv
        env = {"PATH": DEFAULT_PATH, "HOME": HOME, "USER": "sandbox", "LANG": "C.UTF-8",
               "TMPDIR": "/tmp"}  # noqa: S108 - the sandbox's own /tmp
        if spec.network:
            mounts += ["--ro-bind", str(RELAY), f"{NET_DIR}/relay.py",
                       "--ro-bind", str(run_dir / "proxy.sock"), f"{NET_DIR}/proxy.sock"]
            # -I -S: the tenant's PYTHON* variables and site-packages do not reach the relay.
            argv = (PYTHON, "-I", "-S", f"{NET_DIR}/relay.py", str(PROXY_PORT),
                    f"{NET_DIR}/proxy.sock", "--", *argv)
            env |= PROXY_ENV
        mounts += ["--remount-ro", "/"]
        setenv = [arg for name, value in (env | spec.env).items()
                  for arg in ("--setenv", name, value)]
        return [self.prlimit, *rlimits, "--", self.bwrap,
                # No user namespaces inside: a nested one would hand the command "root" over
                # kernel interfaces (mounts, netfilter) it has no business reaching.
                "--unshare-all", "--unshare-user", "--disable-userns",
                "--die-with-parent", "--new-session", "--cap-drop", "ALL",
                "--uid", str(INSIDE_UID), "--gid", str(INSIDE_UID), "--hostname", "sandbox",
                *mounts, "--chdir", cwd, "--clearenv", *setenv, "--", *argv]

    async def _execute(self, spec: CommandSpec, run_dir: Path, uid: int, sink: OutputSink,
                       cancel: asyncio.Event) -> Outcome:
        output = LimitedOutput(sink, spec.limits.output_bytes)
        identity = {"user": uid, "group": uid, "extra_groups": []} if self.switch_uid else {}
        started = time.monotonic()
        spawn = asyncio.ensure_future(asyncio.create_subprocess_exec(
            *self.argv(spec, run_dir), cwd=run_dir,
            stdin=asyncio.subprocess.PIPE if spec.stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True, env={"PATH": DEFAULT_PATH}, **identity))  # type: ignore[arg-type]
        try:
            # Shielded: cancelled mid-spawn, asyncio would kill bwrap alone and then wait for the
            # output pipe, which the sandbox's processes hold open.
            proc = await asyncio.shield(spawn)
        except asyncio.CancelledError:
            await self._abandon(spawn, uid)
            raise
        tasks = {asyncio.create_task(_pump(proc, output)), asyncio.create_task(_feed(proc, spec.stdin))}
        ended: Status | None = None
        try:
            waiting = asyncio.create_task(_exit(proc))
            cancelled = asyncio.create_task(cancel.wait())
            done, _ = await asyncio.wait({waiting, cancelled}, timeout=spec.timeout_seconds,
                                         return_when=asyncio.FIRST_COMPLETED)
            cancelled.cancel()
            if waiting not in done:
                ended = "cancelled" if cancelled in done else "timed_out"
                await self._kill_tree(proc, uid)
            code = await waiting
            await _drain(tasks)
        finally:
            # Any way out (the end, an error of the sink, the caller cancelling us) takes along
            # whatever is left of the tree.
            await self._kill_tree(proc, uid)
            for task in tasks:
                task.cancel()
            await _exit(proc)
        duration = int((time.monotonic() - started) * 1000)
        return _outcome(ended, code, output, duration)

    async def _kill_tree(self, proc: asyncio.subprocess.Process, uid: int) -> None:
        """SIGKILL for bwrap's process group and, as root, for every process of the run's uid.

        The uid is the run's alone, and nothing in the sandbox can change its uid (no
        capabilities, binds are nosuid), so killing the uid's processes kills the whole tree,
        daemons included. bwrap's --die-with-parent (its PID 1 dies with bwrap, and the kernel
        then kills the namespace) is only a convenience: it is racy (bubblewrap issues 633,
        700), and without root it is what there is.
        """
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        await self._kill_uid(uid)

    async def _abandon(self, spawn: asyncio.Future[asyncio.subprocess.Process], uid: int) -> None:
        """Kills what a spawn we were cancelled in the middle of started."""
        await self._kill_uid(uid)  # bwrap and prlimit too: they run as the run's uid
        with contextlib.suppress(Exception):
            proc = await spawn
            await self._kill_tree(proc, uid)
            await asyncio.wait_for(proc.wait(), DRAIN_SECONDS)

    async def _kill_uid(self, uid: int) -> None:
        if not self.switch_uid:
            return
        for _ in range(200):
            pids = await asyncio.to_thread(processes_of, uid)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.01)


def _outcome(ended: Status | None, code: int, output: LimitedOutput, duration_ms: int) -> Outcome:
    # bwrap reports a child killed by signal N as 128+N, the shell's convention; a command that
    # itself exits with 128+N reads the same (ADR 0026).
    signum = code - 128 if 128 < code < 128 + 65 else -code if code < 0 else None
    error = None
    if ended is None and signum is not None:
        error = _SIGNAL_ERRORS.get(signum, f"killed by signal {signum}")  # type: ignore[call-overload]
    elif ended == "timed_out":
        error = "timed out: the process tree was killed"
    elif ended == "cancelled":
        error = "cancelled: the process tree was killed"
    status: Status = ended or ("succeeded" if code == 0 else "failed")
    return Outcome(status, None if ended else code, None if ended else signum, output.total,
                   output.truncated, duration_ms, error)


async def _exit(proc: asyncio.subprocess.Process) -> int:
    """The exit status, as soon as bwrap exits. Not `proc.wait()`: on Python 3.11 that also
    waits for the output pipe to close, which a process that escaped would hold open forever."""
    delay = 0.002
    while proc.returncode is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    return proc.returncode


async def _drain(tasks: set[asyncio.Task[None]]) -> None:
    """The rest of the output, up to the end of the pipe — which comes at once, since nothing of
    the sandbox outlives its PID 1. Bounded all the same: a pipe still open means a process
    escaped, and that must not hang the executor."""
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), DRAIN_SECONDS)
    except TimeoutError:
        log.error("sandbox.output_still_open_after_exit")




async def _pump(proc: asyncio.subprocess.Process, output: LimitedOutput) -> None:
    assert proc.stdout is not None
    while chunk := await proc.stdout.read(READ_CHUNK):
        await output.write(chunk)


async def _feed(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
    if data is None or proc.stdin is None:
        return
    # A command that exits without reading its input is not an error of the run.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(data)
        await proc.stdin.drain()
    proc.stdin.close()
