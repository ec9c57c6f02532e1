"""Recurring schedules through the public interface: interval, cron, max_runs, end_at."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import httpx

from tests.support.jobs import Cleanup, create, get_job, http_job, runs, wait_runs, wait_state
from tests.support.sink import Sink


async def test_every_second_fires_every_second(api: httpx.AsyncClient, sink: Sink,
                                               path: str, jobs: Cleanup) -> None:
    job_id = await jobs.create(api, http_job(sink.url(path),
                                             {"type": "interval", "every_seconds": 1}))
    hits = (await sink.wait_for(path, 6, timeout=15))[:6]
    scheduled = sorted(datetime.fromisoformat(h.headers["X-Duetime-Scheduled-At"]) for h in hits)
    gaps = {(b - a).total_seconds() for a, b in pairwise(scheduled)}
    assert gaps == {1.0}, gaps  # no firing skipped, none doubled
    for h in hits:
        due = datetime.fromisoformat(h.headers["X-Duetime-Scheduled-At"]).timestamp()
        assert h.received_at >= due - 0.001
    job = await get_job(api, job_id)
    assert job is not None and job["next_run_at"] is not None


async def test_six_field_cron_every_two_seconds_with_max_runs(
    api: httpx.AsyncClient, sink: Sink, path: str
) -> None:
    spec = http_job(sink.url(path), {"type": "cron", "expression": "*/2 * * * * *",
                                     "timezone": "Europe/Berlin"}, max_runs=3)
    job_id = await create(api, spec)
    job = await wait_state(api, job_id, "completed", timeout=20)
    assert job["run_count"] == 3
    assert len(sink.hits_for(path)) == 3
    for h in sink.hits_for(path):
        assert datetime.fromisoformat(h.headers["X-Duetime-Scheduled-At"]).second % 2 == 0


async def test_interval_with_end_at_completes(api: httpx.AsyncClient, sink: Sink,
                                              path: str) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    spec = http_job(sink.url(path), {"type": "interval", "every_seconds": 1,
                                     "start_at": start.isoformat(),
                                     "end_at": (start + timedelta(seconds=2)).isoformat()})
    job_id = await create(api, spec)
    job = await wait_state(api, job_id, "completed", timeout=20)
    assert len(sink.hits_for(path)) == 3 and job["run_count"] == 3
    assert len(await runs(api, job_id, status="succeeded")) == 3


async def test_preview_shows_dst_aware_fire_times(api: httpx.AsyncClient) -> None:
    spec = http_job("http://127.0.0.1:9/x", {
        "type": "cron", "expression": "30 2 * * *", "timezone": "Europe/Berlin",
        "start_at": "2027-03-27T00:00:00Z"})
    resp = await api.post("/jobs:preview?count=3", json=spec)
    assert resp.status_code == 200, resp.text
    # 2027-03-28 02:30 does not exist in Berlin: it fires at 03:00 CEST (01:00 UTC).
    assert resp.json()["next_run_times"] == ["2027-03-27T01:30:00Z", "2027-03-28T01:00:00Z",
                                             "2027-03-29T00:30:00Z"]


async def test_next_run_at_advances_as_firings_happen(api: httpx.AsyncClient, sink: Sink,
                                                      path: str, jobs: Cleanup) -> None:
    job_id = await jobs.create(api, http_job(sink.url(path),
                                             {"type": "interval", "every_seconds": 2}))
    first = await get_job(api, job_id)
    assert first is not None
    await wait_runs(api, job_id, "succeeded", 2, timeout=15)
    later = await get_job(api, job_id)
    assert later is not None
    assert later["next_run_at"] > first["next_run_at"]
    assert datetime.fromisoformat(later["next_run_at"]).timestamp() > time.time() - 2


async def test_preview_understands_names_ranges_steps_last_and_nth(api: httpx.AsyncClient) -> None:
    cases = {
        # last day of the month
        "0 12 L * *": ["2027-01-31T12:00:00Z", "2027-02-28T12:00:00Z", "2027-03-31T12:00:00Z"],
        # second Monday of the month
        "0 9 * * MON#2": ["2027-01-11T09:00:00Z", "2027-02-08T09:00:00Z", "2027-03-08T09:00:00Z"],
        # names, ranges and steps
        "*/30 8-9 * JAN mon-fri": ["2027-01-01T08:00:00Z", "2027-01-01T08:30:00Z",
                                   "2027-01-01T09:00:00Z"],
    }
    for expression, expected in cases.items():
        spec = http_job("http://127.0.0.1:9/x", {"type": "cron", "expression": expression,
                                                "start_at": "2027-01-01T00:00:00Z"})
        resp = await api.post("/jobs:preview?count=3", json=spec)
        assert resp.status_code == 200, (expression, resp.text)
        assert resp.json()["next_run_times"] == expected, expression


async def test_preview_in_new_york_and_lord_howe_on_their_dst_days(api: httpx.AsyncClient) -> None:
    async def preview(expression: str, tz: str, start: str) -> list[str]:
        spec = http_job("http://127.0.0.1:9/x", {"type": "cron", "expression": expression,
                                                "timezone": tz, "start_at": start})
        resp = await api.post("/jobs:preview?count=2", json=spec)
        assert resp.status_code == 200, resp.text
        times: list[str] = resp.json()["next_run_times"]
        return times

    # New York, 2027-03-14: 02:30 does not exist -> 03:00 EDT (07:00 UTC).
    assert await preview("30 2 * * *", "America/New_York", "2027-03-13T12:00:00Z") == \
        ["2027-03-14T07:00:00Z", "2027-03-15T06:30:00Z"]
    # New York, 2027-11-07: 01:30 happens twice -> fires once, at 01:30 EDT (05:30 UTC).
    assert await preview("30 1 * * *", "America/New_York", "2027-11-06T12:00:00Z") == \
        ["2027-11-07T05:30:00Z", "2027-11-08T06:30:00Z"]
    # Lord Howe, 2027-10-03: clocks go 02:00 -> 02:30, so 02:15 fires at 02:30 (15:30 UTC).
    assert await preview("15 2 * * *", "Australia/Lord_Howe", "2027-10-02T00:00:00Z") == \
        ["2027-10-02T15:30:00Z", "2027-10-03T15:15:00Z"]
