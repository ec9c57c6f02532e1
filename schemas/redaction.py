"""Secret headers are write-only: stored and sent when firing, never shown back (issue 7, hole 7).

A target's `Authorization`, `Cookie` or `X-Api-Token` is a credential of the tenant's receiver.
Whoever can read the job (a dashboard, a log shipper, a DLQ consumer) must not learn it, so every
place that echoes a target shows `REDACTED` instead of such a value: API views of jobs, the
dead-letter records of commands and run requests, `job.rejected` reasons and log lines.

A client that reads a job, changes something and writes it back sends `REDACTED` for those
headers; `restore_redacted` puts the stored value back (PUT and PATCH round-trip), and refuses a
marker for a header the job does not have rather than sending the marker to the receiver.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

REDACTED = "<redacted>"
_MIN_ECHO = 6  # shorter values would blank out ordinary words of an answer
_MIN_TAIL = 4  # the shortest head of a secret removed from the end of an answer
_ALWAYS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# Names that say what they carry: x-api-token, x-webhook-secret, api_key, x-hub-signature, ...
_SECRETISH = re.compile(r"token|secret|passw|credential|api[-_]?key|signature|auth", re.IGNORECASE)
# Every secret name contains one of these: a line without any (most log lines) is left alone
# after a few substring searches (~3 us, the regex costs ~40 us), off the per-firing cost.
_HINTS = ("token", "secret", "passw", "credential", "apikey", "api-key", "api_key", "signature",
          "auth", "cookie")
# A quoted "name": "value" pair in JSON or in a Python repr (as a validation error or an
# exception prints it), possibly inside a JSON string (escaped quotes); the value may be cut
# off by the end of the text (a DLQ value is shortened before it is stored).
_PAIR = re.compile(
    r"""(?P<nq>\\?["'])(?P<name>[^"'\\\s:]{1,200})(?P=nq)(?P<sep>\s*:\s*)"""
    r"""(?P<vq>\\?["'])(?P<value>.*?)(?:(?<!\\)(?P=vq)|\Z)""",
    re.DOTALL,
)


def is_secret_header(name: str) -> bool:
    return name.lower() in _ALWAYS or _SECRETISH.search(name) is not None


def redact_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {k: REDACTED if is_secret_header(k) else v for k, v in headers.items()}


# Objects whose secret-named entries are redacted in echoes: a target's headers, and a command
# target's environment (API_TOKEN, DB_PASSWORD, ...).
_NAMED_SECRETS = frozenset({"headers", "env"})


def redact_json(value: Any) -> Any:
    """`value` with every secret entry of every `headers` or `env` object in it redacted (a
    copy)."""
    if isinstance(value, dict):
        return {k: redact_headers(v) if k in _NAMED_SECRETS and isinstance(v, dict)
                else redact_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    return value


def _pair(match: re.Match[str]) -> str:
    if is_secret_header(match["name"]):
        return (f"{match['nq']}{match['name']}{match['nq']}{match['sep']}{match['vq']}{REDACTED}"
                f"{match['vq']}")
    # A plain field's value may quote pairs of its own: an exception's repr in a log line's
    # "error" quotes the request's headers ('Authorization': 'Bearer ...'), and the match
    # above took that whole value in one piece.
    value = match["value"]
    inner = redact_text(value)
    if inner == value:
        return match[0]
    start, end = match.start("value") - match.start(), match.end("value") - match.start()
    return match[0][:start] + inner + match[0][end:]


def redact_text(text: str) -> str:
    """Free text (a reason, a log line) with the value of every quoted secret pair redacted."""
    lower = text.lower()
    return _PAIR.sub(_pair, text) if any(h in lower for h in _HINTS) else text


def redact_raw(raw: str) -> str:
    """A message as received (a DLQ record's value): redacted as JSON when it parses, else as text."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return redact_text(raw)
    redacted = redact_json(parsed)
    # Byte for byte as received unless something had to go.
    return raw if redacted == parsed else orjson.dumps(redacted).decode()


def scrub_echo(text: str | None, headers: Mapping[str, str]) -> str | None:
    """`text` (a receiver's answer, an error) without the secret header values the call sent:
    an endpoint that echoes its request must not turn them into readable run history."""
    if not text:
        return text
    for name, value in headers.items():
        if not is_secret_header(name):
            continue
        # "Bearer <token>" may come back whole or as the bare token: the whole first, so the
        # same answer always reads the same once scrubbed.
        for part in dict.fromkeys((value, value.rpartition(" ")[2])):
            if len(part) < _MIN_ECHO:
                continue
            text = _without_cut_echo(text.replace(part, REDACTED), part)
    return text


def _without_cut_echo(text: str, secret: str) -> str:
    """`text` without a head of `secret` at its very end: an answer that stopped arriving (the
    call's time ran out) may end inside an echoed secret. Heads shorter than _MIN_TAIL are
    left: they say next to nothing and would blank ordinary endings."""
    head = secret[:_MIN_TAIL]
    start = text.find(head, max(0, len(text) - len(secret) + 1))
    while start != -1:  # the first such start is the longest head
        if secret.startswith(text[start:]):
            return text[:start] + REDACTED
        start = text.find(head, start + 1)
    return text


# The parts of a job spec that carry headers: its target and its notification webhooks.
_WITH_HEADERS = ("target", "on_failure", "on_late", "on_recovered")


def _headers_of(spec: Mapping[str, Any], part: str) -> dict[str, Any] | None:
    value = spec.get(part)
    headers = value.get("headers") if isinstance(value, dict) else None
    return headers if isinstance(headers, dict) else None


def redact_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A stored job spec as the API shows it: the secret headers of its target and of its
    notification webhooks redacted."""
    out = dict(spec)
    for part in _WITH_HEADERS:
        headers = _headers_of(spec, part)
        if headers is not None:
            out[part] = {**spec[part], "headers": redact_headers(headers)}
    return out


def has_redacted(spec: Mapping[str, Any]) -> bool:
    return any(REDACTED in (_headers_of(spec, part) or {}).values() for part in _WITH_HEADERS)


def restore_spec(new: dict[str, Any], stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """A job spec written back (PUT, PATCH) with its `REDACTED` header values restored from the
    stored spec; ValueError when one has nothing stored to restore."""
    if not has_redacted(new):
        return new
    out = dict(new)
    for part in _WITH_HEADERS:
        headers = _headers_of(new, part)
        if headers is not None and REDACTED in headers.values():
            stored_headers = _headers_of(stored or {}, part) or {}
            out[part] = {**new[part], "headers": restore_redacted(headers, stored_headers)}
    return out


def restore_redacted(new: Mapping[str, str], stored: Mapping[str, str]) -> dict[str, str]:
    """`new` headers with each `REDACTED` value replaced by the stored value of that header.

    Header names match case-insensitively, as HTTP does. Raises ValueError naming the header
    when there is no stored value to put back.
    """
    by_name = {k.lower(): v for k, v in stored.items()}
    out: dict[str, str] = {}
    for name, value in new.items():
        if value == REDACTED:
            if name.lower() not in by_name:
                raise ValueError(f"header {name!r} is {REDACTED!r} but the job has no stored value "
                                 "for it: send the real value")
            value = by_name[name.lower()]
        out[name] = value
    return out
