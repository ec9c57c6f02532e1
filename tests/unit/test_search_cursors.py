"""Keyset cursors round-trip exactly and refuse anything this API did not hand out."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from duetime.problems import ProblemError
from search_service import cursors
from search_service.cursors import INFINITY


def test_round_trip_keeps_microseconds_and_instant() -> None:
    at = datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    key, ident = cursors.decode(cursors.encode("created_at_desc", at, "j1"),
                                "created_at_desc", "time") or (None, None)
    assert key == at and ident == "j1"


def test_text_keys_and_infinity_round_trip() -> None:
    name = "nightly \u00fcber-report\n\U0001f600" * 9  # 198 characters
    assert cursors.decode(cursors.encode("name_asc", name, "j"), "name_asc", "text") == (name, "j")
    assert cursors.decode(cursors.encode("next_run_at_asc", INFINITY, "j"),
                          "next_run_at_asc", "time") == (INFINITY, "j")
    naive_max = datetime.max  # how asyncpg returns 'infinity'
    assert cursors.decode(cursors.encode("next_run_at_asc", naive_max, "j"),
                          "next_run_at_asc", "time") == (INFINITY, "j")


def test_longest_name_fits_in_a_cursor() -> None:
    cursor = cursors.encode("name_asc", "\u0001\U0001f600" * 100, "f" * 32)
    assert len(cursor) <= cursors.MAX_CURSOR_LENGTH
    assert cursors.decode(cursor, "name_asc", "text") is not None


def test_empty_cursor_is_the_first_page() -> None:
    assert cursors.decode(None, "runs", "time") is None
    assert cursors.decode("", "runs", "time") is None


def test_cursor_of_another_sort_is_refused() -> None:
    cursor = cursors.encode("created_at_desc", datetime.now(UTC), "j")
    with pytest.raises(ProblemError) as info:
        cursors.decode(cursor, "created_at_asc", "time")
    assert info.value.status == 422 and info.value.errors
    assert info.value.errors[0]["field"] == "cursor"
    assert "created_at_desc" in info.value.errors[0]["message"]


def _b64(raw: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(raw)).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "%%%", "not-base64!", "AAAA", "x" * 3000,
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    _b64({"a": 1}), _b64(["runs"]), _b64(["runs", "2026-01-01T00:00:00Z"]),
    _b64(["runs", "2026-01-01T00:00:00Z", 5]), _b64(["runs", "yesterday", "r"]),
    _b64(["runs", "2026-01-01T00:00:00", "r"]),  # no offset
    _b64(["runs", 1700000000, "r"]), _b64(["runs", "2026-01-01T00:00:00Z", ""]),
    _b64(["runs", "2026-01-01T00:00:00Z", "r\u0000"]), _b64(["runs", "2026-01-01T00:00:00Z", "r" * 201]),
    _b64(["runs", "2026-01-01T00:00:00Z", "r", "extra"]),
])
def test_garbage_is_a_422_on_cursor(cursor: str) -> None:
    with pytest.raises(ProblemError) as info:
        cursors.decode(cursor, "runs", "time")
    assert info.value.status == 422
    assert [e["field"] for e in info.value.errors or []] == ["cursor"]


def test_text_key_with_nul_or_too_long_is_refused() -> None:
    for key in ("a\u0000b", "x" * 201):
        with pytest.raises(ProblemError):
            cursors.decode(_b64(["name_asc", key, "j"]), "name_asc", "text")
