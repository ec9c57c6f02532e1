"""A local HTTP sink that records every request it receives (the target of test jobs)."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

# The local stack's egress allowlist (DUETIME_EGRESS_ALLOW) admits loopback on 18900-18999
# only: a sink anywhere else is refused by the executor like any internal address. 18999 stays
# free: tests whose target must fail ("nothing listens") call it, and a sink there answered
# them (two tests failed so in a fresh clone's run, 2026-11-28).
NOTHING_LISTENS = 18999
SINK_PORTS = range(18900, NOTHING_LISTENS)


async def start_site(runner: web.AppRunner, host: str = "127.0.0.1",
                     ports: range = SINK_PORTS) -> int:
    """Serve `runner` on a free port of `ports` (tried in random order); the port."""
    for port in random.sample(ports, len(ports)):
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError:  # taken (another test's sink)
            await site.stop()
            continue
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


async def start_raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ports: range = SINK_PORTS,
) -> tuple[asyncio.Server, int]:
    """A plain TCP server (for what an HTTP server would hide) on a free port of `ports`."""
    for port in random.sample(ports, len(ports)):
        try:
            return await asyncio.start_server(handle, "127.0.0.1", port), port
        except OSError:  # taken
            continue
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


def free_port(ports: range = SINK_PORTS) -> int:
    """A port of `ports` nothing listens on right now (for "nothing answers" targets)."""
    for port in random.sample(ports, len(ports)):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"every port in {ports.start}-{ports.stop - 1} is taken")


@dataclass
class Hit:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # epoch seconds


@dataclass
class Sink:
    host: str = "127.0.0.1"
    port: int = 0
    ports: range = SINK_PORTS  # where it may bind (tests of the egress policy bind elsewhere)
    delay_seconds: float = 0.0
    status: int = 200
    # Per-request answers (e.g. fail only the first attempt); `status` when None.
    status_for: Callable[[Hit], int] | None = None
    # The answer's text ("ok" when None), e.g. an endpoint that echoes its request.
    answer_for: Callable[[Hit], str] | None = None
    # Headers of the answer (none when None), e.g. a Set-Cookie.
    headers_for: Callable[[Hit], dict[str, str]] | None = None
    hits: list[Hit] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition | None = None

    async def start(self) -> Sink:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = await start_site(self._runner, self.host, self.ports)
        self._arrived = asyncio.Condition()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/hook") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        hit = Hit(request.path, request.method, dict(request.headers), await request.read(),
                  time.time())
        self.hits.append(hit)
        assert self._arrived is not None
        async with self._arrived:
            self._arrived.notify_all()
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        status = self.status if self.status_for is None else self.status_for(hit)
        return web.Response(status=status,
                            text="ok" if self.answer_for is None else self.answer_for(hit),
                            headers=None if self.headers_for is None else self.headers_for(hit))

    def hits_for(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout: float = 30.0) -> list[Hit]:
        assert self._arrived is not None
        deadline = time.monotonic() + timeout
        async with self._arrived:
            while len(self.hits_for(path)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout=left)
                except TimeoutError:
                    break
        return self.hits_for(path)
