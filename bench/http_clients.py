"""Benchmark: async HTTP clients firing many webhooks at once (the executor's hot path).

A sink runs in a separate process on 127.0.0.1; each client posts N requests concurrently, the
way a burst of due runs arrives. Reports completed requests and requests per second.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from aiohttp import web

from bench.common import stamp, write_section

BODY = {"run": "x" * 100}


def _serve(port: int) -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", ok)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def _burst(n: int, one: Callable[[], Awaitable[bool]]) -> tuple[int, float]:
    start = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return sum(r is True for r in results), time.perf_counter() - start


async def httpx_pool(url: str, n: int, connections: int, gate: int | None) -> tuple[int, float]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    sem = asyncio.Semaphore(gate or n)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one() -> bool:
            async with sem:
                return (await client.post(url, json=BODY)).status_code == 200

        return await _burst(n, one)


async def aiohttp_pool(url: str, n: int, connections: int) -> tuple[int, float]:
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> bool:
            async with session.post(url, json=BODY) as resp:
                await resp.read()
                return resp.status == 200

        return await _burst(n, one)


async def run(n: int, port: int) -> list[tuple[str, int, float]]:
    url = f"http://127.0.0.1:{port}/hook"
    cases: list[tuple[str, Callable[[], Awaitable[tuple[int, float]]]]] = [
        ("httpx 0.28, pool 100", lambda: httpx_pool(url, n, 100, None)),
        ("httpx 0.28, pool 8 + semaphore 8", lambda: httpx_pool(url, n, 8, 8)),
        ("aiohttp, pool 100", lambda: aiohttp_pool(url, n, 100)),
        ("aiohttp, pool 512 (executor default)", lambda: aiohttp_pool(url, n, 512)),
    ]
    out = []
    for name, case in cases:
        done, seconds = await case()
        out.append((name, done, seconds))
        print(f"{name}: {done}/{n} in {seconds:.2f}s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--port", type=int, default=28999)  # the benchmark sinks' range
    args = parser.parse_args()
    server = multiprocessing.Process(target=_serve, args=(args.port,), daemon=True)
    server.start()
    time.sleep(1.0)
    try:
        rows = asyncio.run(run(args.requests, args.port))
    finally:
        server.terminate()
        server.join(5)
    table = "| client | completed | seconds | requests/s |\n|---|---:|---:|---:|\n" + "\n".join(
        f"| {name} | {done}/{args.requests} | {sec:.2f} | {done / sec:,.0f} |"
        for name, done, sec in rows)
    print(table)
    write_section("HTTP clients under a burst", f"Last run: {stamp()} "
                  f"(`python -m bench.http_clients`): {args.requests} POSTs started at once "
                  f"against a local aiohttp sink in another process.\n\n{table}")


if __name__ == "__main__":
    main()
