"""Schedules are anchored at the job's creation whatever the edit (issue 6, defect 4): every
component — writer, watcher, run recorder — plans from the same instant."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from tests.support.jobs import create, get_job, http_job
from tests.support.sink import Sink


def _ms(iso: str) -> int:
    """Milliseconds since the epoch, floored like duetime's fire times (no float rounding)."""
    instant = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


async def test_an_edit_keeps_the_interval_phase_and_the_delay_anchor(
    api: httpx.AsyncClient, sink: Sink, path: str,
) -> None:
    every = await create(api, http_job(sink.url(f"{path}/every"), {"type": "interval",
                                                                    "every_seconds": 2}))
    # A delay edited to land beyond the writer's 15 s load window, which the watcher loads.
    delay = await create(api, http_job(sink.url(f"{path}/delay"), {"type": "delay",
                                                                    "seconds": 5}))
    await asyncio.sleep(0.7)  # edits well away from any firing instant
    moved = f"{path}/every-moved"
    assert (await api.patch(f"/jobs/{every}", json={"target": {"url": sink.url(moved)}})
            ).status_code == 202
    assert (await api.patch(f"/jobs/{delay}", json={"schedule": {"seconds": 16}})
            ).status_code == 202
    hits = await sink.wait_for(moved, 2, timeout=10)
    job = await get_job(api, every)
    assert job is not None
    created = _ms(job["created_at"])
    offsets = [_ms(h.headers["X-Duetime-Scheduled-At"]) - created for h in hits[:2]]
    assert all(off % 2000 == 0 and off > 0 for off in offsets), offsets
    fired = await sink.wait_for(f"{path}/delay", 1, timeout=25)
    delayed = await get_job(api, delay)
    assert delayed is not None and len(fired) == 1
    assert _ms(fired[0].headers["X-Duetime-Scheduled-At"]) == _ms(delayed["created_at"]) + 16_000
    await api.delete(f"/jobs/{every}")
