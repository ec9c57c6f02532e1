"""Issue 7, hole 5: webhooks are signed (Standard Webhooks), checked with the reference verifier.

The exploit: anyone who can reach a receiver can send it a webhook "from duetime". A receiver
that verifies `webhook-signature` with its tenant's secret now tells the real call from a forged,
tampered, replayed or other tenant's one. Verification uses the `standardwebhooks` package,
the library receivers use, never duetime's own signing code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import webhooks
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.jobs import Cleanup, http_job
from tests.support.sink import Hit, Sink
from tests.support.waiting import eventually

# The executor rereads secrets every 2 s (DUETIME_SIGNING_REFRESH_SECONDS); a query on top.
PROPAGATION_SECONDS = 4.0
BODY = {"report": "daily", "text": "grüße"}

NewSecret = Callable[[httpx.AsyncClient], Awaitable[dict[str, Any]]]


async def delete_all(api: httpx.AsyncClient) -> None:
    """Leftovers of other tests (a fuzzer's creates, say) would count against the cap."""
    listed = await api.get("/signing-secrets", params={"limit": 500})
    for item in listed.json()["items"]:
        await api.delete(f"/signing-secrets/{item['id']}")


@pytest.fixture
async def new_secret(api: httpx.AsyncClient,
                     api_b: httpx.AsyncClient) -> AsyncIterator[NewSecret]:
    """Create signing secrets for a tenant (both test tenants start with none); every one still
    there is deleted after the test."""
    for client in (api, api_b):
        await delete_all(client)
    made: list[tuple[httpx.AsyncClient, str]] = []

    async def create(api: httpx.AsyncClient) -> dict[str, Any]:
        resp = await api.post("/signing-secrets")
        assert resp.status_code == 201, resp.text
        made.append((api, resp.json()["id"]))
        created: dict[str, Any] = resp.json()
        return created

    yield create
    for api, secret_id in made:
        await api.delete(f"/signing-secrets/{secret_id}")


async def hit_after(sink: Sink, path: str, since: float, timeout: float = 20) -> Hit:
    """The first call to `path` the sink received after `since` (epoch seconds)."""
    async def check() -> Hit | None:
        return next((h for h in sink.hits_for(path) if h.received_at > since), None)

    return await eventually(check, timeout=timeout, interval=0.1)


async def every_second(jobs: Cleanup, api: httpx.AsyncClient, sink: Sink, path: str) -> str:
    spec = http_job(sink.url(path), {"type": "interval", "every_seconds": 1})
    spec["target"]["body"] = BODY
    return await jobs.create(api, spec)


def verifies(secret: str, hit: Hit, body: bytes | None = None) -> bool:
    try:
        Webhook(secret).verify(hit.body if body is None else body, hit.headers, json_parse=False)
    except WebhookVerificationError:
        return False
    return True


async def test_a_signed_call_verifies_and_forgeries_do_not(
        api: httpx.AsyncClient, api_b: httpx.AsyncClient, sink: Sink, path: str, jobs: Cleanup,
        new_secret: NewSecret, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = await new_secret(api)
    theirs = await new_secret(api_b)
    assert mine["secret"].startswith("whsec_") and len(base64.b64decode(mine["secret"][6:])) >= 24
    ready = time.time() + PROPAGATION_SECONDS
    await every_second(jobs, api, sink, path)
    hit = await hit_after(sink, path, ready)

    assert verifies(mine["secret"], hit)
    # webhook-id is the run id, the same as the Idempotency-Key receivers dedupe on.
    assert hit.headers["webhook-id"] == hit.headers["Idempotency-Key"] == \
        hit.headers["X-Duetime-Run-Id"]
    assert abs(int(hit.headers["webhook-timestamp"]) - hit.received_at) < 5
    # A tampered body, another tenant's secret and an attacker's own key all fail.
    assert not verifies(mine["secret"], hit, hit.body.replace(b"daily", b"hourly"))
    assert not verifies(theirs["secret"], hit)
    forged_key = base64.b64encode(b"attacker-chosen-key-32-bytes-xxx").decode()
    forged = Hit(hit.path, hit.method, {**hit.headers, "webhook-signature": "v1," + base64.b64encode(
        hmac.new(base64.b64decode(forged_key),
                 f"{hit.headers['webhook-id']}.{hit.headers['webhook-timestamp']}.".encode()
                 + hit.body, hashlib.sha256).digest()).decode()}, hit.body, hit.received_at)
    assert not verifies(mine["secret"], forged)

    # The same captured call replayed more than 5 minutes later is refused as stale.
    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + timedelta(minutes=5, seconds=30)

    monkeypatch.setattr(webhooks, "datetime", Later)
    assert not verifies(mine["secret"], hit)


async def test_rotation_signs_with_both_secrets_and_a_deleted_one_stops_verifying(
        api: httpx.AsyncClient, sink: Sink, path: str, jobs: Cleanup,
        new_secret: NewSecret) -> None:
    old = await new_secret(api)
    new = await new_secret(api)
    ready = time.time() + PROPAGATION_SECONDS
    await every_second(jobs, api, sink, path)
    hit = await hit_after(sink, path, ready)
    assert len(hit.headers["webhook-signature"].split(" ")) >= 2
    assert verifies(old["secret"], hit) and verifies(new["secret"], hit)

    resp = await api.delete(f"/signing-secrets/{old['id']}")
    assert resp.status_code == 204
    after = await hit_after(sink, path, time.time() + PROPAGATION_SECONDS)
    assert verifies(new["secret"], after)
    assert not verifies(old["secret"], after)


async def test_an_empty_body_is_signed_as_empty(
        api: httpx.AsyncClient, sink: Sink, path: str, jobs: Cleanup,
        new_secret: NewSecret) -> None:
    mine = await new_secret(api)
    ready = time.time() + PROPAGATION_SECONDS
    await jobs.create(api, http_job(sink.url(path), {"type": "interval", "every_seconds": 1}))
    hit = await hit_after(sink, path, ready)
    assert hit.body == b""
    assert verifies(mine["secret"], hit)


async def test_the_secret_is_shown_once_and_only_to_its_tenant(
        api: httpx.AsyncClient, api_b: httpx.AsyncClient, new_secret: NewSecret) -> None:
    created = await new_secret(api)
    listed = await api.get("/signing-secrets", params={"limit": 500})
    assert listed.status_code == 200
    assert created["secret"] not in listed.text and "secret" not in listed.text
    mine = [item for item in listed.json()["items"] if item["id"] == created["id"]]
    assert mine == [{"id": created["id"], "created_at": created["created_at"]}]

    # Another tenant neither sees nor deletes it; its owner can, once.
    theirs = await api_b.get("/signing-secrets", params={"limit": 500})
    assert created["id"] not in theirs.text
    refused = await api_b.delete(f"/signing-secrets/{created['id']}")
    assert refused.status_code == 404
    assert refused.headers["content-type"] == "application/problem+json"
    still = await api.get("/signing-secrets", params={"limit": 500})
    assert created["id"] in still.text
    assert (await api.delete(f"/signing-secrets/{created['id']}")).status_code == 204
    assert (await api.delete(f"/signing-secrets/{created['id']}")).status_code == 404


async def test_the_list_pages_and_refuses_what_it_does_not_know(
        api: httpx.AsyncClient, new_secret: NewSecret) -> None:
    ids = {(await new_secret(api))["id"] for _ in range(2)}
    first = (await api.get("/signing-secrets", params={"limit": 1})).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = (await api.get("/signing-secrets",
                            params={"limit": 1, "cursor": first["next_cursor"]})).json()
    assert first["items"][0]["id"] != second["items"][0]["id"]
    assert ids == {first["items"][0]["id"], second["items"][0]["id"]}
    for params in ({"secret": "1"}, {"limit": "0"}, {"cursor": "nonsense"}):
        resp = await api.get("/signing-secrets", params=params)
        assert resp.status_code == 422, params
        assert resp.headers["content-type"] == "application/problem+json"


async def test_a_tenant_has_a_bounded_number_of_secrets(
        api: httpx.AsyncClient, new_secret: NewSecret) -> None:
    existing = len((await api.get("/signing-secrets", params={"limit": 500})).json()["items"])
    for _ in range(existing, 5):
        await new_secret(api)
    over = await api.post("/signing-secrets")
    assert over.status_code == 409, over.text
    assert over.headers["content-type"] == "application/problem+json"
    assert "at most 5" in over.json()["detail"]
    assert "whsec_" not in over.text


async def test_the_create_takes_no_fields(api: httpx.AsyncClient) -> None:
    before = len((await api.get("/signing-secrets", params={"limit": 500})).json()["items"])
    resp = await api.post("/signing-secrets", json={"secret": "whsec_bXljaG9pY2U="})
    assert resp.status_code == 422
    assert resp.json()["errors"] == [{"field": "secret", "message": "unknown field"}]
    malformed = await api.post("/signing-secrets", content=b"{", headers={
        "Content-Type": "application/json"})
    assert malformed.status_code == 400
    after = len((await api.get("/signing-secrets", params={"limit": 500})).json()["items"])
    assert after == before
