"""Opaque keyset cursors: the sort key and id of the last row of a page.

A cursor names the listing it belongs to (the jobs sort, or runs), so a cursor from another sort
is refused instead of silently skipping or repeating rows. It carries no tenant: every query is
scoped to the caller's tenant anyway, so a cursor only ever positions within what the caller may see.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Literal

import orjson

from duetime.problems import ProblemError

KeyKind = Literal["time", "text"]
# `next_run_at_asc` sorts jobs without a next run last, as if they ran at infinity; asyncpg maps
# this datetime to and from Postgres' 'infinity'.
INFINITY = datetime.max.replace(tzinfo=UTC)
# A name is at most 200 characters; JSON-escaped and base64-encoded it stays well below this.
MAX_CURSOR_LENGTH = 2048
_MAX_ID_LENGTH = 200
_MAX_TEXT_KEY_LENGTH = 200

CursorKey = datetime | str


def storable(text: str) -> bool:
    """Postgres text cannot hold NUL: such a value can match nothing and must not reach a query."""
    return "\x00" not in text


class CursorError(ProblemError):
    def __init__(self, message: str) -> None:
        super().__init__(422, "Invalid request", "cursor is not valid",
                         [{"field": "cursor", "message": message}])


def _encode_key(key: CursorKey) -> str:
    if isinstance(key, datetime):
        return "infinity" if key.replace(tzinfo=None) == datetime.max else key.isoformat()
    return key


def _decode_key(raw: object, kind: KeyKind) -> CursorKey:
    if not isinstance(raw, str):
        raise CursorError("not a cursor this API returned")
    if kind == "text":
        if len(raw) > _MAX_TEXT_KEY_LENGTH or not storable(raw):
            raise CursorError("not a cursor this API returned")
        return raw
    if raw == "infinity":
        return INFINITY
    try:
        at = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise CursorError("not a cursor this API returned") from exc
    if at.tzinfo is None:
        raise CursorError("not a cursor this API returned")
    return at


def encode(listing: str, key: CursorKey, ident: str) -> str:
    """The cursor that continues `listing` after the row with sort key `key` and id `ident`."""
    raw = orjson.dumps([listing, _encode_key(key), ident])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None, listing: str, kind: KeyKind) -> tuple[CursorKey, str] | None:
    """(sort key, id) of the row to continue after, or None for the first page."""
    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise CursorError("too long to be a cursor this API returned")
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise CursorError("not a cursor this API returned") from exc
    if not (isinstance(raw, list) and len(raw) == 3 and isinstance(raw[0], str)
            and isinstance(raw[2], str) and 0 < len(raw[2]) <= _MAX_ID_LENGTH
            and storable(raw[2])):
        raise CursorError("not a cursor this API returned")
    if raw[0] != listing:
        raise CursorError(f"this cursor belongs to {raw[0][:40]!r}, not {listing!r}; "
                          "keep the same sort while paging")
    return _decode_key(raw[1], kind), raw[2]
