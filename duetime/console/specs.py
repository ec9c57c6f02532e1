"""Job specs from files or flags, and patches from `--set path=value`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from duetime import bounded_yaml
from duetime.console.client import USAGE, CliError


def load_document(path: str) -> Any:
    """A JSON or YAML file (`-`: stdin)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc}", USAGE) from exc
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(f"{path} is neither JSON nor YAML: {exc}", USAGE) from exc


def jobs_file(path: str) -> tuple[bytes, str, int | None]:
    """A jobs file's bytes as they are (the server reads them within its bounds), their media
    type, and how many jobs it holds when that is easy to see (None otherwise)."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc}", USAGE) from exc
    try:
        document, kind = orjson.loads(raw), "application/json"
    except orjson.JSONDecodeError:
        kind = "application/yaml"
        try:
            document = bounded_yaml.load(raw.decode())
        except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
            document = None  # the server says what is wrong with it
    if isinstance(document, dict):
        document = document.get("jobs")
    return raw, kind, len(document) if isinstance(document, list) else None


def schedule_from_flags(at: str | None, in_seconds: float | None, every: int | None,
                        cron: str | None, tz: str, now: bool) -> dict[str, Any]:
    chosen = [name for name, given in (("--at", at), ("--in", in_seconds), ("--every", every),
                                       ("--cron", cron), ("--now", now or None))
              if given is not None]
    if len(chosen) != 1:
        raise CliError("give exactly one schedule: --at, --in, --every, --cron or --now"
                       + (f" (got {', '.join(chosen)})" if chosen else ""), USAGE)
    if at is not None:
        return {"type": "once", "at": at}
    if in_seconds is not None:
        return {"type": "delay", "seconds": in_seconds}
    if every is not None:
        return {"type": "interval", "every_seconds": every}
    if cron is not None:
        return {"type": "cron", "expression": cron, "timezone": tz}
    return {"type": "now"}


def labels_from(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--label wants key=value, not {pair!r}", USAGE)
        labels[key] = value
    return labels


def patch_from(pairs: list[str]) -> dict[str, Any]:
    """`--set target.timeout_seconds=10 --set name=nightly` as a JSON merge patch (RFC 7396);
    a value is JSON when it parses (10, true, null, {"a": 1}), a string otherwise."""
    patch: dict[str, Any] = {}
    for pair in pairs:
        path, sep, raw = pair.partition("=")
        if not sep or not path or any(not part for part in path.split(".")):
            raise CliError(f"--set wants path=value, not {pair!r}", USAGE)
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
        node = patch
        *parents, leaf = path.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise CliError(f"--set {path}: {part} is set to a value already", USAGE)
            node = child
        node[leaf] = value
    return patch
