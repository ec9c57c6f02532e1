"""Asserting RFC 9457 problem+json answers."""

from __future__ import annotations

from typing import Any

import httpx


def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    """The problem body of `resp`, which must have `status` and be problem+json."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["title"]
    return body
