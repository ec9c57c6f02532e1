"""The gateway's API keys file: SHA-256 hashes of the keys, never the keys themselves.

The file is what nginx includes inside its key → tenant maps (deploy/local/nginx.conf.template),
so the gateway needs no other copy; each line also carries the key's id and creation time:

    "<sha256 hex of the key>" "<tenant>"; # id=<key id> created=<UTC time>

Keys are 192 random bits, so a plain SHA-256 is enough: there is nothing to brute-force that a
slow hash would protect (ADR 0017). `python -m duetime keys` creates, revokes and lists them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

KEY_PREFIX = "dtk_"
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_LINE = re.compile(r'"(?P<sha256>[0-9a-f]{64})"\s+"(?P<tenant>[^"]+)";\s*'
                   r"#\s*id=(?P<key_id>\S+)\s+created=(?P<created>\S+)\s*")
HEADER = (
    "# duetime API keys — SHA-256 of each key, never the key; managed by `python -m duetime keys`.\n"
    "# nginx includes this file inside its key -> tenant maps. One key per line:\n"
    '# "<sha256 hex of the key>" "<tenant>"; # id=<key id> created=<UTC time>\n'
)


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    tenant: str
    sha256: str
    created: str

    def line(self) -> str:
        return f'"{self.sha256}" "{self.tenant}"; # id={self.key_id} created={self.created}\n'


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def read_keys(path: Path) -> list[KeyRecord]:
    if not path.exists():
        return []
    records = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        match = _LINE.fullmatch(text)
        if match is None or not TENANT.fullmatch(match["tenant"]):
            raise ValueError(f"{path}:{number}: not a key line ({HEADER.splitlines()[2][2:]})")
        records.append(KeyRecord(**match.groupdict()))
    return records


def _preamble(path: Path) -> str:
    """The file's leading comment block (kept across edits), or the standard header."""
    if not path.exists():
        return HEADER
    lines = path.read_text().splitlines(keepends=True)
    head = "".join(line for line in lines[:next(
        (i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")),
        len(lines))])
    return head or HEADER


def _write_keys(path: Path, records: list[KeyRecord]) -> None:
    preamble = _preamble(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(preamble + "".join(r.line() for r in records))
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[list[KeyRecord]]:
    """The file's records, read and rewritten under a lock so two edits never lose one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        records = read_keys(path)
        yield records
        _write_keys(path, records)
    finally:
        os.close(fd)


def create_key(path: Path, tenant: str, now: datetime) -> tuple[KeyRecord, str]:
    """Add a key for `tenant`; returns its record and the key, which is never stored."""
    if not TENANT.fullmatch(tenant):
        raise ValueError(f"tenant {tenant!r} must match {TENANT.pattern}")
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    record = KeyRecord(key_id="key_" + secrets.token_hex(6), tenant=tenant,
                       sha256=hash_key(key),
                       created=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    with _locked(path) as records:
        records.append(record)
    return record, key


def revoke_key(path: Path, key_id: str) -> KeyRecord | None:
    with _locked(path) as records:
        for record in records:
            if record.key_id == key_id:
                records.remove(record)
                return record
    return None


def reload_gateway(pid_file: Path, wait_seconds: float = 5.0) -> bool:
    """Ask the running nginx to re-read its configuration (and so the keys); False if none runs.

    Returns once a worker started by the reload runs (or after `wait_seconds`): until then the
    old workers may still answer, and a key created a moment ago would be refused — the
    README's `KEY=$(make -s key …); curl …` runs the two back to back."""
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False
    if b"nginx" not in cmdline:
        return False  # a stale pid file: never signal a process we did not mean
    before = _children(pid)
    os.kill(pid, signal.SIGHUP)  # what `nginx -s reload` sends
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline and not (_children(pid) - before):
        time.sleep(0.02)
    time.sleep(0.05)  # the new worker opens its listeners' accept loop
    return True


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (nginx's workers), from /proc."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return found
