"""The gateway keeps its connections to the services open across bursts (the upstreams'
`keepalive` in deploy/local/nginx.conf.template): a burst of concurrent requests opens
connections to a service once, and the next burst goes out on them. With fewer kept than were
in flight, every request beyond them opened and closed a connection of its own (1,800 per
10,000 creates by 64 clients; docs/benchmarks.md, "Gateway keep-alive").

Each burst is held at the service (SIGSTOP) until the gateway has every request of it in
flight at once, so how many connections it needed does not depend on this box's speed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path

import httpx

from tests.support.jobs import Cleanup
from tests.support.stack import service_pid, service_port
from tests.support.waiting import eventually

Send = Callable[[int], Coroutine[None, None, httpx.Response]]
BURST = 100  # more than the 32 idle connections nginx kept per upstream before


def _connections(port: int) -> set[int]:
    """The client ports of the established TCP connections to 127.0.0.1:`port` (the service's
    side of each connection the gateway holds to it)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


async def _held_burst(instance: str, send: Send) -> set[int]:
    """BURST requests sent at once while the service is stopped, so the gateway must hold all
    of them in flight; the service's connections once every answer is back."""
    pid, port = service_pid(instance), service_port(instance)
    assert pid is not None, f"{instance} is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        sent = [asyncio.create_task(send(i)) for i in range(BURST)]

        async def all_in_flight() -> bool:
            return len(_connections(port)) >= BURST
        await eventually(all_in_flight, timeout=15, interval=0.05)
    finally:
        os.kill(pid, signal.SIGCONT)
    answers = await asyncio.gather(*sent)
    assert {r.status_code for r in answers} <= {200, 202}, [r.text for r in answers[:3]]
    return _connections(port)


async def _reuses_its_connections(instance: str, send: Send) -> None:
    first = await _held_burst(instance, send)
    # Kept after the burst: as many as it had in flight, not the 32 an older config kept.
    assert len(first) >= BURST, len(first)
    second = await _held_burst(instance, send)
    # The second burst went out on the first one's connections: (almost) none opened anew.
    assert len(second - first) <= 5, (len(first), len(second), len(second - first))


def _client(env: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=env["DUETIME_URL"], timeout=30,
                             headers={"Authorization": f"Bearer {env['DUETIME_API_KEY']}"},
                             limits=httpx.Limits(max_connections=BURST))


async def test_creates_reuse_the_gateways_connections_to_the_job_service(
        env: dict[str, str], api: httpx.AsyncClient, jobs: Cleanup) -> None:
    async with _client(env) as client:
        async def create(i: int) -> httpx.Response:
            resp = await client.post("/jobs", json={
                "name": f"keepalive-{i}", "schedule": {"type": "once", "at": "2099-01-01T00:00:00Z"},
                "target": {"type": "http", "url": "http://127.0.0.1:28999/never"}})
            if resp.status_code == 202:
                jobs.track(api, resp.json()["job_id"])  # cancelled after the test
            return resp

        await _reuses_its_connections("job_service", create)


async def test_reads_reuse_the_gateways_connections_to_the_search_service(
        env: dict[str, str]) -> None:
    async with _client(env) as client:
        async def read(_: int) -> httpx.Response:
            return await client.get("/jobs", params={"limit": 1})

        await _reuses_its_connections("search_service", read)
