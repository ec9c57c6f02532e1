"""What one sandboxed command is: argv, environment, input files, limits — and their checks.

The API validates targets before they are stored; these checks run again just before a
command starts, because whatever reaches the sandbox decides paths and mounts on the host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from schemas.api import NETWORK_MIN_MEMORY_MB

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_ARGS = 4096
MAX_FILES = 1000


class SpecRefused(ValueError):
    """A command the sandbox will not start; the message is safe to show to the tenant."""


@dataclass(frozen=True)
class Limits:
    """Per-run resource limits (rlimits in the sandbox: ADR 0026)."""

    memory_mb: int = 512          # address space of each process (RLIMIT_AS)
    cpu_seconds: int = 60         # CPU time of each process (RLIMIT_CPU)
    processes: int = 256          # tasks of the run's sandbox user, threads included (RLIMIT_NPROC)
    file_size_mb: int = 1024      # the largest file a process may write (RLIMIT_FSIZE)
    open_files: int = 1024        # RLIMIT_NOFILE
    tmp_mb: int = 256             # size of the private /tmp (a tmpfs: it counts as memory)
    output_bytes: int = 10 * 1024 * 1024  # stored output; the rest is counted, not kept

    def check(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SpecRefused(f"limits.{name} must be a positive integer")
        if self.processes < 4:
            raise SpecRefused("limits.processes must be at least 4 (the sandbox itself needs 3)")


@dataclass(frozen=True)
class CommandSpec:
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    files: dict[str, str | bytes] = field(default_factory=dict)
    working_dir: str = ""
    network: bool = False
    timeout_seconds: float = 60.0
    limits: Limits = field(default_factory=Limits)

    def check(self) -> None:
        if not self.argv or len(self.argv) > MAX_ARGS:
            raise SpecRefused(f"command must have 1 to {MAX_ARGS} arguments")
        if any(not isinstance(arg, str) or "\0" in arg for arg in self.argv):
            raise SpecRefused("command arguments must be strings without NUL characters")
        self._check_env()
        if len(self.files) > MAX_FILES:
            raise SpecRefused(f"at most {MAX_FILES} files")
        for path in self.files:
            relative_path(path, "files")
        if self.working_dir:
            relative_path(self.working_dir, "working_dir")
        if not 0 < self.timeout_seconds <= 24 * 3600:
            raise SpecRefused("timeout_seconds must be > 0 and at most 86400")
        self.limits.check()
        if self.network and self.limits.memory_mb < NETWORK_MIN_MEMORY_MB:
            raise SpecRefused(f"network: true needs limits.memory_mb >= {NETWORK_MIN_MEMORY_MB}")

    def _check_env(self) -> None:
        for name, value in self.env.items():
            if not _ENV_NAME.fullmatch(name):
                raise SpecRefused(f"env name {name[:40]!r} is not [A-Za-z_][A-Za-z0-9_]*")
            if "\0" in value:
                raise SpecRefused(f"env.{name} contains a NUL character")


def relative_path(text: str, what: str) -> PurePosixPath:
    """A path inside the job's directory: relative, no `..`, no empty or `.` segments."""
    parts = text.split("/")
    if (not text or len(text) > 1024 or "\0" in text or text.startswith("/")
            or any(part in ("", ".", "..") for part in parts)):
        raise SpecRefused(f"{what}: {text[:80]!r} must be a relative path without '.', '..' or '//'")
    return PurePosixPath(text)
