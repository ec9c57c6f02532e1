"""Hole 3 of issue 7: the services trusted whoever reached them. Each test here is the attack,
which now fails closed: only the gateway's signed, fresh, single-use tenant assertion counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from duetime.tenant_assertion import ASSERTION_HEADER, REQUEST_ID_HEADER, TenantAssertions
from tests.security.conftest import ATTACKER, VICTIM, VictimJobs, snapshot
from tests.support.gateway import assertion_headers, new_request_id
from tests.support.problems import problem
from tests.support.waiting import eventually

LISTING = "/jobs?limit=500"


async def test_the_old_attack_a_tenant_header_at_the_service_ports_is_401(
    job_service: httpx.AsyncClient, search_service: httpx.AsyncClient, api_b: httpx.AsyncClient,
    victim: VictimJobs, pg: asyncpg.Pool[Any],
) -> None:
    # Before: curl job_service:18101 -H 'X-Duetime-Tenant: tenant-b' read and wrote B's jobs.
    before = await snapshot(pg, victim.ids)
    forged = {"X-Duetime-Tenant": VICTIM, REQUEST_ID_HEADER: new_request_id()}
    job = victim.waiting
    attempts: list[tuple[httpx.AsyncClient, str, str, dict[str, Any] | None]] = [
        (job_service, "POST", f"/jobs/{job}/pause", None),
        (job_service, "PATCH", f"/jobs/{job}", {"target": {"url": "http://attacker.example/"}}),
        (job_service, "DELETE", f"/jobs/{job}", None),
        (job_service, "POST", f"/jobs/{job}/run", None),
        (search_service, "GET", f"/jobs/{job}", None),
        (search_service, "GET", LISTING, None),
        (search_service, "GET", f"/jobs/{victim.fired}/runs", None),
    ]
    for client, method, url, body in attempts:
        resp = await client.request(method, url, headers=forged, json=body)
        problem(resp, 401)
        assert job not in resp.text and victim.fired not in resp.text
    await untouched_after_a_marker(api_b, pg, victim, before)


async def untouched_after_a_marker(api_b: httpx.AsyncClient, pg: asyncpg.Pool[Any],
                                    victim: VictimJobs, before: list[dict[str, Any]]) -> None:
    """B's own edit, applied after anything the attack could have queued on the same key (one
    job's commands are applied in order), is the only change to B's jobs."""
    marker = f"marker-{new_request_id()}"
    assert (await api_b.patch(f"/jobs/{victim.waiting}", json={"name": marker})).status_code == 202

    async def applied() -> bool:
        name = await pg.fetchval("SELECT spec->>'name' FROM jobs WHERE job_id = $1",
                                 victim.waiting)
        return bool(name == marker)

    await eventually(applied, timeout=15)
    after = await snapshot(pg, victim.ids)
    expected = [{**row, "version": row["version"] + 1}
                if row.get("job_id") == victim.waiting and "version" in row else row
                for row in before]
    assert after == expected


def _bad_assertions(signer: TenantAssertions) -> dict[str, Callable[[], dict[str, str]]]:
    """Every way to present an assertion for the victim that is not the gateway's fresh word."""
    now_ms = int(time.time() * 1000)
    other_key = TenantAssertions("not-the-gateway-secret-but-long-enough")

    def swapped_tenant() -> dict[str, str]:
        headers = assertion_headers(signer, ATTACKER)
        headers[ASSERTION_HEADER] = headers[ASSERTION_HEADER].replace(f":{ATTACKER}:",
                                                                     f":{VICTIM}:")
        return headers

    def other_request_id() -> dict[str, str]:
        return {**assertion_headers(signer, VICTIM), REQUEST_ID_HEADER: new_request_id()}

    return {
        "none": lambda: {REQUEST_ID_HEADER: new_request_id()},
        "garbage": lambda: {ASSERTION_HEADER: "v1:tenant-b:x:1:AAAA",
                            REQUEST_ID_HEADER: "x"},
        "wrong secret": lambda: assertion_headers(other_key, VICTIM),
        "expired": lambda: assertion_headers(signer, VICTIM, at_ms=now_ms - 60_000),
        "from the future": lambda: assertion_headers(signer, VICTIM, at_ms=now_ms + 60_000),
        "signed for another method": lambda: assertion_headers(signer, VICTIM, "POST"),
        "tenant swapped": swapped_tenant,
        "other request id": other_request_id,
    }


BAD = ("none", "garbage", "wrong secret", "expired", "from the future",
       "signed for another method", "tenant swapped", "other request id")


@pytest.mark.parametrize("kind", BAD)
async def test_anything_but_a_valid_fresh_assertion_is_401_at_the_service_port(
    kind: str, search_service: httpx.AsyncClient, gateway_signer: TenantAssertions,
    victim: VictimJobs,
) -> None:
    headers = {"X-Duetime-Tenant": VICTIM, **_bad_assertions(gateway_signer)[kind]()}
    resp = await search_service.get(LISTING, headers=headers)
    problem(resp, 401)
    assert victim.waiting not in resp.text
    # The control: the same request with the gateway's valid word is served, so the 401 above
    # is the assertion's doing and not a broken request.
    ok = await search_service.get(LISTING, headers=assertion_headers(gateway_signer, VICTIM))
    assert ok.status_code == 200 and victim.waiting in ok.text


async def test_a_captured_assertion_cannot_be_replayed(
    search_service: httpx.AsyncClient, job_service: httpx.AsyncClient,
    gateway_signer: TenantAssertions, victim: VictimJobs,
) -> None:
    captured = assertion_headers(gateway_signer, VICTIM)
    assert (await search_service.get(LISTING, headers=captured)).status_code == 200
    problem(await search_service.get(LISTING, headers=captured), 401)
    captured = assertion_headers(gateway_signer, VICTIM)
    assert (await search_service.get(f"/jobs/{victim.waiting}", headers=captured)).status_code == 200
    problem(await search_service.get(f"/jobs/{victim.waiting}", headers=captured), 401)
    # A read's assertion, taken to the other service (which has its own memory of request ids),
    # does not authorise a write: the method is signed too.
    read = assertion_headers(gateway_signer, VICTIM, "GET")
    problem(await job_service.post(f"/jobs/{victim.waiting}/pause", headers=read), 401)


async def test_the_gateway_replaces_whatever_assertion_a_client_sends(
    api: httpx.AsyncClient, anonymous: httpx.AsyncClient, gateway_signer: TenantAssertions,
    victim: VictimJobs,
) -> None:
    # Even a correctly signed assertion for the victim, sent by a client, is overwritten by the
    # gateway with the one for the caller's own key...
    stolen = {**assertion_headers(gateway_signer, VICTIM), "X-Duetime-Tenant": VICTIM}
    resp = await api.get(LISTING, headers=stolen)
    assert resp.status_code == 200 and victim.waiting not in resp.text
    problem(await api.get(f"/jobs/{victim.waiting}", headers=stolen), 404)
    # ...and without a key the gateway does not forward it at all.
    problem(await anonymous.get(LISTING, headers=stolen), 401)
