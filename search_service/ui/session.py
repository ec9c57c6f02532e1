"""The dashboard's session: the API key kept in a cookie that only the gateway reads.

The search service never checks the key: it sets the cookie from the login form, and the gateway
(deploy/local/gateway.js) hashes it like an X-API-Key for /ui paths only and sends the tenant
as its signed assertion, as for every API call (ADR 0017, 0029). A key the gateway does not know
sends the browser back to the login page with the cookie cleared.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "duetime_ui"
COOKIE_PATH = "/ui"
MAX_FORM_BYTES = 4096
# API keys are "dtk_" + URL-safe base64 (duetime/api_keys.py): a cookie value needs no quoting.
_KEY = re.compile(r"^[A-Za-z0-9._~-]{1,256}$")
HOME = "/ui/jobs"


class LoginRefused(ValueError):
    """A login or logout the service will not act on; the message is shown to the person."""


def same_origin(request: Request) -> bool:
    """A form post from a page of this site: its Origin (or, without one, its Referer) is the
    gateway's own scheme and host. SameSite=Strict already keeps the cookie off cross-site
    requests; this also refuses login CSRF, which needs no cookie."""
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    own = f"{proto}://{request.headers.get('host', '')}"
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return False
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    return origin == own


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a dashboard path of this site, never another site."""
    if not value or not value.startswith("/ui/") or "\\" in value or value.startswith("//") \
            or any(ord(c) < 0x21 for c in value):
        return HOME
    return value


def parse_form(body: bytes) -> dict[str, str]:
    if len(body) > MAX_FORM_BYTES:
        raise LoginRefused("the form is too large")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False,
                          max_num_fields=8)
    except (UnicodeDecodeError, ValueError) as exc:
        raise LoginRefused("the form could not be read") from exc
    return dict(pairs)


def checked_key(form: dict[str, str]) -> str:
    key = form.get("key", "").strip()
    if not key:
        raise LoginRefused("enter an API key")
    if not _KEY.match(key):
        raise LoginRefused("that is not an API key: keys are letters, digits, '-', '_', '.', '~'")
    return key


def _secure(request: Request) -> bool:
    # The gateway sets X-Forwarded-Proto to its own scheme, replacing any client's.
    return request.headers.get("x-forwarded-proto") == "https"


def start(response: Response, request: Request, key: str) -> None:
    """A session cookie (no Max-Age): gone when the browser closes, or at logout."""
    response.set_cookie(COOKIE, key, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=_secure(request))


def end(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=_secure(request))
