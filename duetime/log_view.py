"""`duetime logs` / `make logs`: the local stack's JSON logs, readable in a terminal, followed.

Every service logs one JSON object per line (duetime.logs); this prints them as
`time level service event job_id=… run_id=… …`, the identifying fields first, colored on a
terminal, merged across `.stack/logs/*.log` as lines arrive. Lines that are not JSON (stack.sh's
own, Kafka's, Postgres's) pass through with their component's name.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
FIRST = ("job_id", "run_id", "attempt", "tenant", "status", "reason", "error")
HIDDEN = {"ts", "level", "event", "service", "logger", "taskName"}
COLORS = {"debug": "2", "info": "32", "warning": "33", "error": "31", "critical": "1;31"}


@dataclass(frozen=True)
class Filter:
    services: frozenset[str] = frozenset()
    min_level: int = 0
    match: str = ""

    def wants(self, component: str, level: str, text: str) -> bool:
        if self.services and component not in self.services:
            return False
        if LEVELS.get(level, 20) < self.min_level:
            return False
        return not self.match or self.match in text


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def _value(value: object) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return f'"{text}"' if " " in text or not text else text


def render(raw: str, component: str, keep: Filter, color: bool = False) -> str | None:
    """One log line as a person reads it; None when the filter drops it."""
    line = raw.rstrip("\n")
    if not line:
        return None
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        record = None
    if not isinstance(record, dict):
        return f"{_paint(component, '2', color)} {line}" if keep.wants(component, "info", line) \
            else None
    level = str(record.get("level", "info")).lower()
    if not keep.wants(str(record.get("service", component)), level, line):
        return None
    ts = str(record.get("ts", ""))
    clock = ts[11:23] if len(ts) >= 23 else ts
    fields = [k for k in FIRST if k in record and record[k] is not None]
    fields += sorted(k for k in record if k not in HIDDEN and k not in FIRST)
    pairs = " ".join(f"{_paint(k, '36', color)}={_value(record[k])}" for k in fields)
    service = str(record.get("service", component))
    return " ".join(part for part in (
        _paint(clock, "2", color), _paint(f"{level.upper():<7}", COLORS.get(level, "0"), color),
        f"{service:<14}", str(record.get("event", "")), pairs) if part)


@dataclass
class Tail:
    """Follows every *.log file of a directory, new ones included, from their last lines.

    A file rotated away (renamed to <name>.1, as supervisord does with the services' logs, ADR
    0034) is read to its end before the new <name> is followed from its start."""

    directory: Path
    lines: int = 20
    positions: dict[Path, int] = field(default_factory=dict)
    partial: dict[Path, str] = field(default_factory=dict)
    inodes: dict[Path, int] = field(default_factory=dict)

    def _start(self, path: Path) -> Iterator[str]:
        with path.open("rb") as f:
            self.inodes[path] = os.fstat(f.fileno()).st_ino
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))  # enough for the last lines of a busy service
            tail = f.read().decode(errors="replace").splitlines()[-self.lines:] if self.lines else []
        self.positions[path] = size
        yield from tail

    def _read(self, path: Path, source: Path) -> Iterator[str]:
        """The complete lines of `source` past the position kept for `path`."""
        with source.open("rb") as f:
            f.seek(self.positions[path])
            chunk = f.read()
        self.positions[path] += len(chunk)
        text = self.partial.pop(path, "") + chunk.decode(errors="replace")
        *complete, rest = text.split("\n")
        if rest:
            self.partial[path] = rest
        yield from complete

    def _rotated_rest(self, path: Path) -> Iterator[str]:
        """What was written to a rotated file after the last poll, then its unfinished line."""
        rotated = path.with_name(path.name + ".1")
        try:
            if rotated.stat().st_ino == self.inodes[path]:
                yield from self._read(path, rotated)
        except FileNotFoundError:
            pass
        if rest := self.partial.pop(path, ""):
            yield rest

    def poll(self) -> Iterator[tuple[str, str]]:
        """(component, line) for every complete line written since the last poll."""
        for path in sorted(self.directory.glob("*.log")):
            component = path.stem
            if path not in self.positions:
                for line in self._start(path):
                    yield component, line
                continue
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if stat.st_ino != self.inodes[path]:  # rotated: finish the old file, then the new
                for line in self._rotated_rest(path):
                    yield component, line
                self.positions[path], self.inodes[path] = 0, stat.st_ino
            elif stat.st_size < self.positions[path]:  # truncated: start over
                self.positions[path], self.partial[path] = 0, ""
            if stat.st_size == self.positions[path]:
                continue
            for line in self._read(path, path):
                yield component, line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="duetime logs", description=__doc__)
    parser.add_argument("services", nargs="*", help="only these components (default: all)")
    parser.add_argument("--dir", type=Path, default=Path(".stack/logs"))
    parser.add_argument("--level", choices=list(LEVELS), default="debug",
                        help="hide lines below this level")
    parser.add_argument("--match", default="", help="only lines containing this (a job or run id)")
    parser.add_argument("-n", "--lines", type=int, default=20, help="earlier lines per file")
    parser.add_argument("--no-follow", action="store_true", help="print and exit")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        print(f"no logs at {args.dir} (is the stack up? make up)", file=sys.stderr)
        return 1
    keep = Filter(frozenset(args.services), LEVELS[args.level], args.match)
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    tail = Tail(args.dir, args.lines)
    try:
        while True:
            for component, line in tail.poll():
                shown = render(line, component, keep, color)
                if shown is not None:
                    print(shown, flush=True)
            if args.no_follow:
                return 0
            time.sleep(0.2)
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
