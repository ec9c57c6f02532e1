"""A webhook's answer leaves nothing behind in duetime's HTTP client: a cookie one tenant's
target sets is never sent on a later call — not on another tenant's call to the same host, not
on the same job's next firing. Before, the executor's one HTTP session kept aiohttp's default
cookie jar for every call it made, so a `Set-Cookie` from tenant A's target (a session, say)
rode along on tenant B's calls to that host.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from tests.support.jobs import Cleanup, http_job
from tests.support.sink import Hit, Sink

SECRET = "session=tenant-a-secret"


def _set_cookie(hit: Hit) -> dict[str, str]:
    # A host name, not an address: aiohttp's jar ignores cookies from bare IP addresses.
    return {"Set-Cookie": f"{SECRET}; Path=/; Max-Age=3600"} if "/a" in hit.path else {}


async def test_a_cookie_a_target_sets_is_never_sent_again(
    api: httpx.AsyncClient, api_b: httpx.AsyncClient, jobs: Cleanup,
    make_sink: Callable[..., Awaitable[Sink]], path: str,
) -> None:
    sink = await make_sink(headers_for=_set_cookie)
    host = f"http://localhost:{sink.port}"
    await jobs.create(api, http_job(f"{host}{path}/a", {"type": "now"}))
    first = await sink.wait_for(f"{path}/a", timeout=20)
    assert len(first) == 1, "tenant A's job did not fire"

    # Tenant B, same host, after the cookie was set; then tenant A again.
    await jobs.create(api_b, http_job(f"{host}{path}/b", {"type": "now"}))
    await jobs.create(api, http_job(f"{host}{path}/a-again", {"type": "now"}))
    later = (await sink.wait_for(f"{path}/b", timeout=20)
             + await sink.wait_for(f"{path}/a-again", timeout=20))
    assert len(later) == 2, "a later job did not fire"
    for hit in later:
        assert not any(name.lower() == "cookie" for name in hit.headers), (hit.path, hit.headers)
