"""Field-level differences between a stored job spec and the one an apply asks for (ADR 0037).

Both sides are the JSON a JobSpec dumps (every field, defaults included), so a change is a
change of meaning, not of spelling. A value absent on one side is `null` there. Secret-named
header and env values are write-only (schemas.redaction): a change of one shows as
`<redacted>` on both sides. Long strings are cut (the answer shows what changed, not whole files).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.redaction import REDACTED, is_secret_header, redact_headers, redact_json

SHOWN_CHARS = 200
_NAMED_SECRETS = ("headers", "env")


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return value[:SHOWN_CHARS] + "…"
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut(v) for v in value]
    return value


def _shown(path: str, value: Any) -> Any:
    """`value` as the answer shows it: secrets redacted (a whole `headers` object too), cut."""
    if isinstance(value, dict) and path.rsplit(".", 1)[-1] in _NAMED_SECRETS:
        value = redact_headers(value)
    return _cut(redact_json(value))


def _secret(path: str, key: str | int) -> bool:
    parent = path.rsplit(".", 1)[-1]
    return isinstance(key, str) and parent in _NAMED_SECRETS and is_secret_header(key)


def _walk(before: Any, after: Any, path: str, found: list[Change]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            old, new = before.get(key), after.get(key)
            if old == new:
                continue
            if _secret(path, key):
                found.append(Change(_join(path, key), REDACTED if key in before else None,
                                    REDACTED if key in after else None))
            else:
                _walk(old, new, _join(path, key), found)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            if old != new:
                _walk(old, new, _join(path, index), found)
    elif before != after:
        found.append(Change(path, _shown(path, before), _shown(path, after)))


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Each leaf (or list of another length) that differs, in the order of the fields."""
    found: list[Change] = []
    _walk(before, after, "", found)
    return found
