"""POST /jobs through the gateway from many concurrent clients: the creates of every workload."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.common import percentile


@dataclass
class CreateStats:
    wanted: int
    accepted: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)  # of each accepted POST

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {"wanted": self.wanted, "accepted": self.accepted,
                "seconds": round(self.seconds, 3), "rate_per_s": round(self.rate, 1),
                "p50_ms": percentile(self.latencies_ms, 50),
                "p99_ms": percentile(self.latencies_ms, 99),
                "statuses": dict(self.statuses)}


async def create_jobs(url: str, key: str, bodies: list[dict[str, Any]], concurrency: int = 64,
                      deadline: float | None = None) -> CreateStats:
    """Each body posted once by one of `concurrency` clients; a 429/503 is retried after its
    Retry-After (at most 0.5 s), as a real client would, until `deadline` (epoch s)."""
    stats = CreateStats(len(bodies))
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    end = deadline if deadline is not None else float("inf")

    async def client(session: aiohttp.ClientSession) -> None:
        while time.time() < end and not queue.empty():
            body = queue.get_nowait()
            while time.time() < end:
                sent = time.perf_counter()
                try:
                    async with session.post(f"{url}/jobs", json=body) as resp:
                        await resp.read()
                        stats.statuses[str(resp.status)] += 1
                        if resp.status in (429, 503):
                            wait = float(resp.headers.get("Retry-After") or 0.05)
                            await asyncio.sleep(min(wait, 0.5))
                            continue
                        if resp.status == 202:
                            stats.accepted += 1
                            stats.latencies_ms.append((time.perf_counter() - sent) * 1000)
                except aiohttp.ClientError as exc:
                    stats.statuses[type(exc).__name__] += 1
                break

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    stats.seconds = time.perf_counter() - started
    return stats
