"""Every timer rule from API.md gets a clear problem+json, and nothing is created."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

GOOD_URL = "http://127.0.0.1:9/hook"


def _problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["title"]
    return body


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"hours": -1, "seconds": 5, "url": GOOD_URL}, "hours"),
        ({"minutes": -5, "seconds": 5, "url": GOOD_URL}, "minutes"),
        ({"seconds": 1.5, "url": GOOD_URL}, "seconds"),
        ({"seconds": "10", "url": GOOD_URL}, "seconds"),
        ({"seconds": True, "url": GOOD_URL}, "seconds"),
        ({"seconds": None, "url": GOOD_URL}, "seconds"),
        ({"hours": 0, "minutes": 0, "seconds": 0, "url": GOOD_URL}, "body"),
        ({"url": GOOD_URL}, "body"),
        ({"seconds": 5}, "url"),
        ({"seconds": 5, "url": "/relative/path"}, "url"),
        ({"seconds": 5, "url": "ftp://example.com/x"}, "url"),
        ({"seconds": 5, "url": "javascript:alert(1)"}, "url"),
        ({"seconds": 5, "url": "http://"}, "url"),
        ({"seconds": 5, "url": "http://a b/"}, "url"),
        ({"seconds": 5, "url": GOOD_URL, "extra": 1}, "extra"),
        ({"seconds": 10**12, "url": GOOD_URL}, "seconds"),
    ],
)
async def test_invalid_timer_is_422_naming_the_field(
    api: httpx.AsyncClient, payload: dict[str, Any], field: str
) -> None:
    body = _problem(await api.post("/timers", json=payload), 422)
    assert any(e["field"] == field for e in body["errors"]), body


@pytest.mark.parametrize("raw", [b"{", b"not json", b'{"seconds": 5,}', b"\xff\xfe", b"[]", b'"x"'])
async def test_malformed_body_is_a_client_error(api: httpx.AsyncClient, raw: bytes) -> None:
    resp = await api.post("/timers", content=raw, headers={"Content-Type": "application/json"})
    assert resp.status_code in (400, 422)
    _problem(resp, resp.status_code)


async def test_missing_or_wrong_key_is_401(anonymous: httpx.AsyncClient) -> None:
    payload = {"seconds": 5, "url": GOOD_URL}
    _problem(await anonymous.post("/timers", json=payload), 401)
    resp = await anonymous.post("/timers", json=payload, headers={"X-API-Key": "nope"})
    _problem(resp, 401)
    resp = await anonymous.get("/timers/x", headers={"Authorization": "Bearer nope"})
    _problem(resp, 401)


async def test_a_forged_tenant_header_is_ignored(
    anonymous: httpx.AsyncClient, env: dict[str, str]
) -> None:
    resp = await anonymous.post("/timers", json={"seconds": 5, "url": GOOD_URL},
                                headers={"X-Duetime-Tenant": "dev"})
    _problem(resp, 401)


async def test_body_too_large_is_413(api: httpx.AsyncClient) -> None:
    big = {"seconds": 5, "url": GOOD_URL + "?" + "a" * (400 * 1024)}
    _problem(await api.post("/timers", json=big), 413)


async def test_idempotency_key_returns_same_timer_and_conflicts_on_other_body(
    api: httpx.AsyncClient,
) -> None:
    key = {"Idempotency-Key": f"timer-{uuid.uuid4()}"}
    first = await api.post("/timers", json={"seconds": 600, "url": GOOD_URL}, headers=key)
    again = await api.post("/timers", json={"seconds": 600, "url": GOOD_URL}, headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = await api.post("/timers", json={"seconds": 601, "url": GOOD_URL}, headers=key)
    _problem(other, 409)
    await api.delete(f"/jobs/{first.json()['id']}")
