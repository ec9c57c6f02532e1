"""Secret headers are redacted wherever a target is echoed, and restored on write-back."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.redaction import (
    REDACTED,
    is_secret_header,
    redact_raw,
    redact_spec,
    redact_text,
    restore_spec,
    scrub_echo,
)


@pytest.mark.parametrize("name", ["Authorization", "proxy-authorization", "Cookie", "Set-Cookie",
                                  "X-Api-Token", "X-API-Key", "api_key", "Apikey",
                                  "X-Webhook-Secret", "X-Hub-Signature-256", "X-Password",
                                  "X-Auth-User"])
def test_secret_names(name: str) -> None:
    assert is_secret_header(name)


@pytest.mark.parametrize("name", ["X-Team", "Content-Type", "Accept", "X-Request-Id"])
def test_plain_names(name: str) -> None:
    assert not is_secret_header(name)


def test_a_spec_shows_markers_and_keeps_everything_else() -> None:
    spec: dict[str, Any] = {"name": "n", "payload": {"token": "kept"},
            "target": {"type": "http", "headers": {"Authorization": "Bearer s", "X-Team": "t"}}}
    shown = redact_spec(spec)
    assert shown["target"]["headers"] == {"Authorization": REDACTED, "X-Team": "t"}
    assert shown["payload"] == {"token": "kept"}
    assert spec["target"]["headers"]["Authorization"] == "Bearer s"  # a copy


def test_text_in_json_python_repr_and_escaped_json() -> None:
    text = ('{"Authorization": "Bearer s1"} {\'X-Api-Token\': \'s2\'} '
            '{\\"Cookie\\": \\"s3\\"} "X-Team": "visible"')
    out = redact_text(text)
    assert all(s not in out for s in ("s1", "s2", "s3")) and "visible" in out


def test_raw_messages_are_kept_byte_for_byte_unless_something_is_redacted() -> None:
    plain = '{"b": 1,  "a": "x"}'
    assert redact_raw(plain) == plain
    raw = orjson.dumps({"spec": {"target": {"headers": {"Authorization": "s"}}}}).decode()
    assert orjson.loads(redact_raw(raw))["spec"]["target"]["headers"] == {"Authorization": REDACTED}
    assert "s\"" not in redact_raw('not json "Cookie": "s"')


def test_a_marker_written_back_keeps_the_stored_value() -> None:
    stored = {"target": {"headers": {"authorization": "Bearer s", "X-Team": "t"}}}
    new = {"target": {"headers": {"Authorization": REDACTED, "X-Team": "u"}}}
    assert restore_spec(new, stored)["target"]["headers"] == {"Authorization": "Bearer s",
                                                              "X-Team": "u"}
    with pytest.raises(ValueError, match="X-Other"):
        restore_spec({"target": {"headers": {"X-Other": REDACTED}}}, stored)
    with pytest.raises(ValueError):
        restore_spec(new, None)


def test_an_echoed_answer_loses_the_secret_values_the_call_sent() -> None:
    headers = {"Authorization": "Bearer abcdefgh123", "X-Team": "visible-team"}
    echoed = '{"Authorization": "Bearer abcdefgh123", "token": "abcdefgh123", "X-Team": "visible-team"}'
    out = scrub_echo(echoed, headers)
    assert out is not None and "abcdefgh123" not in out and "visible-team" in out
    assert scrub_echo(None, headers) is None


def test_a_value_cut_off_by_the_end_of_the_text_is_redacted_too() -> None:
    cut = '{"spec": {"target": {"headers": {"X-Team": "t", "Authorization": "Bearer abcdefgh'
    out = redact_raw(cut)
    assert "abcdefgh" not in out and REDACTED in out and '"X-Team": "t"' in out


def test_a_dead_lettered_command_request_hides_secret_environment_values() -> None:
    raw = orjson.dumps({"target": {"type": "command", "command": ["deploy"],
                                   "env": {"API_TOKEN": "s3cr3t-value", "REGION": "eu"}}}).decode()
    shown = orjson.loads(redact_raw(raw))
    assert shown["target"]["env"] == {"API_TOKEN": REDACTED, "REGION": "eu"}
    assert "s3cr3t-value" not in redact_raw(raw)


def test_a_secret_pair_quoted_inside_a_plain_value_is_redacted() -> None:
    # A log line's "error" holding an exception's repr that quotes the request's headers.
    line = orjson.dumps({"event": "call failed", "error": (
        "ClientResponseError(RequestInfo(headers=<CIMultiDictProxy('Host': 'h', "
        "'Authorization': 'Bearer TOPSECRET-1', 'X-Team': 'visible')>), ())")}).decode()
    out = redact_text(line)
    assert "TOPSECRET" not in out and "visible" in out and "call failed" in out
    assert orjson.loads(out)["error"].startswith("ClientResponseError(")


@pytest.mark.parametrize("kept", [4, 9, 18])
def test_an_answer_that_ends_inside_an_echoed_secret_loses_its_head(kept: int) -> None:
    # An answer cut short (the call's time ran out while its body arrived) can end inside an
    # echoed secret: what arrived of it is removed too.
    secret = "Bearer sk_live_ABCDEFGHIJ"
    out = scrub_echo('{"echo": "' + secret[:kept], {"Authorization": secret})
    assert out == '{"echo": "' + REDACTED


@pytest.mark.parametrize("text", ['{"ok": "Bea"}', "ends in Bea", "sk_live_ABCDEFGHIJ and more"])
def test_short_heads_and_heads_not_at_the_end_are_left(text: str) -> None:
    headers = {"Authorization": "Bearer sk_live_ABCDEFGHIJ"}
    out = scrub_echo(text, headers)
    assert out == text.replace("sk_live_ABCDEFGHIJ", REDACTED)
