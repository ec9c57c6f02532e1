"""Search listings through the gateway: GET /jobs filters and sorts, /runs, /stats, preview.

Every test tags its jobs with a label unique to it and filters on that label, so tests running
at the same time against the same stack never see each other's jobs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, get_args
from urllib.parse import parse_qsl

import asyncpg
import httpx
import pytest

from bench.seed_jobs import INSERT as SEED_INSERT
from duetime.sql import load_queries
from schemas.events import RunStatus
from search_service.filters import JobsQuery, RunsQuery, parse_query
from search_service.listing import jobs_statement, runs_statement
from tests.support.jobs import Cleanup, create, get_job, wait_state
from tests.support.sink import Sink
from tests.support.waiting import eventually

NOWHERE = "http://127.0.0.1:9/never-called"
PROBLEM = "application/problem+json"


def never(at: str = "2099-01-01T00:00:00Z") -> dict[str, Any]:
    return {"type": "once", "at": at}


def spec(name: str, tag: str, schedule: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    labels = {"t": tag, **extra.pop("labels", {})}
    return {"name": name, "schedule": schedule or never(),
            "target": extra.pop("target", {"type": "http", "url": NOWHERE}),
            "labels": labels, **extra}


async def listing(api: httpx.AsyncClient, path: str = "/jobs",
                  **params: Any) -> dict[str, Any]:
    resp = await api.get(path, params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def ids(api: httpx.AsyncClient, tag: str, query: str = "") -> list[str]:
    """Job ids of the tagged jobs matching `query` (a raw query string), in the listed order."""
    resp = await api.get(f"/jobs?label=t:{tag}&limit=500{'&' if query else ''}{query}")
    assert resp.status_code == 200, (query, resp.text)
    return [j["job_id"] for j in resp.json()["items"]]


async def walk(api: httpx.AsyncClient, params: dict[str, Any], between_pages: Any = None,
               path: str = "/jobs", max_pages: int | None = None) -> list[dict[str, Any]]:
    """The items of a listing, page by page, calling `between_pages` after each page."""
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(max_pages or 200):
        page = await listing(api, path, **params, **({"cursor": cursor} if cursor else {}))
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        if between_pages is not None:
            await between_pages()
    if max_pages is None:
        raise AssertionError("pagination did not end")
    return items


async def tenant_of_job(pg: asyncpg.Pool[Any], job_id: str) -> str:
    tenant: str = await pg.fetchval("SELECT tenant FROM jobs WHERE job_id = $1", job_id)
    return tenant


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


class Fleet:
    """Jobs with known differences, created one after another (so created_at orders them)."""

    def __init__(self, api: httpx.AsyncClient, tag: str) -> None:
        self.api, self.tag = api, tag
        self.ids: dict[str, str] = {}
        self.names: dict[str, str] = {}

    async def add(self, key: str, name: str, **kwargs: Any) -> str:
        job_id = await create(self.api, spec(name, self.tag, **kwargs))
        self.ids[key], self.names[key] = job_id, name
        return job_id

    def of(self, *keys: str) -> set[str]:
        return {self.ids[k] for k in keys}


@pytest.fixture
async def fleet(api: httpx.AsyncClient, tag: str) -> AsyncIterator[Fleet]:
    f = Fleet(api, tag)
    await f.add("a", f"{tag}-alpha", labels={"team": "red"})
    await f.add("b", f"{tag}-beta", schedule=never("2098-06-01T00:00:00Z"),
                target={"type": "kafka", "topic": "dev.search-e2e"}, labels={"team": "blue"})
    await f.add("c", f"{tag}-gamma", schedule={"type": "cron", "expression": "0 0 1 1 *"},
                labels={"team": "red", "env": "prod"})
    await f.add("d", f"{tag}-Delta_50%", schedule={"type": "interval", "every_seconds": 3600})
    await f.add("e", f"{tag}-epsilon", schedule=never("2097-01-01T00:00:00Z"))
    await f.add("f", f"{tag}-phi")
    assert (await api.post(f"/jobs/{f.ids['e']}/pause")).status_code == 202
    assert (await api.delete(f"/jobs/{f.ids['f']}")).status_code == 202
    await wait_state(api, f.ids["e"], "paused")
    await wait_state(api, f.ids["f"], "cancelled")
    yield f
    for job_id in f.ids.values():
        await api.delete(f"/jobs/{job_id}")


# ---- filters ----------------------------------------------------------------------------------

async def test_each_filter_selects_exactly_its_jobs(api: httpx.AsyncClient, fleet: Fleet) -> None:
    tag = fleet.tag
    expected = {
        "": fleet.of("a", "b", "c", "d", "e", "f"),
        "state=active": fleet.of("a", "b", "c", "d"),
        "state=paused": fleet.of("e"),
        "state=cancelled": fleet.of("f"),
        "state=completed": set(),
        f"name={tag}-alpha": fleet.of("a"),
        f"name={tag}-ALPHA": set(),  # name is exact
        f"name={tag}": set(),
        "q=ALPH": fleet.of("a"),  # q is a case-insensitive substring
        f"q={tag[:12].upper()}": fleet.of("a", "b", "c", "d", "e", "f"),
        "q=ta": fleet.of("b", "d"),  # too short for a trigram: the other plan, same answer
        "q=zz": set(),
        "q=%25": fleet.of("d"),  # LIKE wildcards are literal characters in q
        "q=_": fleet.of("d"),
        "q=%5C": set(),
        "label=team:red": fleet.of("a", "c"),
        "label=team:red&label=env:prod": fleet.of("c"),
        "label=team:green": set(),
        "schedule_type=cron": fleet.of("c"),
        "schedule_type=interval": fleet.of("d"),
        "schedule_type=once": fleet.of("a", "b", "e", "f"),
        "target_type=kafka": fleet.of("b"),
        "target_type=http": fleet.of("a", "c", "d", "e", "f"),
        # Cancelled jobs have no next run, the paused one keeps its own.
        "next_run_before=2098-12-31T00:00:00Z": fleet.of("b", "c", "d", "e"),
        "next_run_before=2097-06-01T00:00:00%2B02:00": fleet.of("c", "d", "e"),
        "next_run_after=2098-12-31T00:00:00Z": fleet.of("a"),
        "next_run_after=2097-06-01T00:00:00Z&next_run_before=2099-06-01T00:00:00Z":
            fleet.of("a", "b"),
        "state=active&label=team:red&schedule_type=once": fleet.of("a"),
    }
    for query, want in expected.items():
        assert set(await ids(api, tag, query)) == want, query


async def test_created_range(api: httpx.AsyncClient, fleet: Fleet) -> None:
    middle = datetime.now(UTC)  # after every fleet job was created (they are visible)
    late = await fleet.add("late", f"{fleet.tag}-late")
    before = middle.isoformat().replace("+00:00", "Z")
    assert set(await ids(api, fleet.tag, f"created_after={before}")) == {late}
    assert set(await ids(api, fleet.tag, f"created_before={before}")) == \
        fleet.of("a", "b", "c", "d", "e", "f")
    earlier = (middle - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert await ids(api, fleet.tag, f"created_before={earlier}") == []


async def test_list_items_have_the_same_shape_as_get_job(api: httpx.AsyncClient,
                                                         fleet: Fleet) -> None:
    items = (await listing(api, label=f"t:{fleet.tag}", name=fleet.names["c"]))["items"]
    assert len(items) == 1
    single = await get_job(api, fleet.ids["c"])
    assert items[0] == single


# ---- sorting and pagination -------------------------------------------------------------------

async def test_sorts(api: httpx.AsyncClient, fleet: Fleet) -> None:
    created = list(fleet.ids.values())
    assert await ids(api, fleet.tag) == created[::-1]
    assert await ids(api, fleet.tag, "sort=created_at_desc") == created[::-1]
    assert await ids(api, fleet.tag, "sort=created_at_asc") == created
    by_name = [fleet.ids[k] for k in sorted(fleet.ids, key=lambda k: fleet.names[k])]
    assert await ids(api, fleet.tag, "sort=name_asc") == by_name
    jobs = (await listing(api, label=f"t:{fleet.tag}", sort="next_run_at_asc"))["items"]
    times = [j["next_run_at"] for j in jobs]
    assert times[-1] is None and None not in times[:-1]  # f, cancelled, sorts last
    assert times[:-1] == sorted(times[:-1])
    assert [j["job_id"] for j in jobs][:2] == [fleet.ids["d"], fleet.ids["c"]]


@pytest.mark.parametrize("sort", ["created_at_desc", "created_at_asc", "next_run_at_asc", "name_asc"])
async def test_pages_have_no_duplicates_or_gaps_while_jobs_are_inserted(
    api: httpx.AsyncClient, tag: str, sort: str
) -> None:
    originals = []
    for i in range(10):
        # Distinct next runs, names in no particular order relative to creation.
        at = (datetime(2099, 1, 1, tzinfo=UTC) + timedelta(days=(7 * i) % 10)).isoformat()
        originals.append(await create(api, spec(f"{tag}-{(3 * i) % 10}", tag, never(at))))
    for job_id in originals[:4]:  # four without a next run: pages end inside the NULLs
        assert (await api.delete(f"/jobs/{job_id}")).status_code == 202
    for job_id in originals[:4]:
        await wait_state(api, job_id, "cancelled")
    inserted: list[str] = []

    async def insert() -> None:
        inserted.append(await create(api, spec(f"{tag}-new-{len(inserted)}", tag)))

    seen = [j["job_id"] for j in await walk(api, {"label": f"t:{tag}", "sort": sort, "limit": 3},
                                              insert)]
    assert len(seen) == len(set(seen)), "a job was listed twice"
    assert set(originals) <= set(seen), "a job that existed throughout was skipped"
    assert len(inserted) >= 3
    assert set(seen) <= set(originals) | set(inserted)
    # Fresh walk, nothing inserted meanwhile: exactly the full, ordered listing.
    full = await ids(api, tag, f"sort={sort}")
    again = [j["job_id"] for j in await walk(api, {"label": f"t:{tag}", "sort": sort, "limit": 4})]
    assert again == full


async def test_limit_defaults_to_50_and_caps_at_500(api: httpx.AsyncClient, jobs: Cleanup,
                                                    tag: str) -> None:
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with gate:
            resp = await api.post("/jobs", json=spec(f"{tag}-{i}", tag))
            assert resp.status_code == 202, resp.text
            jobs.track(api, resp.json()["job_id"])

    await asyncio.gather(*(one(i) for i in range(51)))
    await eventually(lambda: _count_is(api, tag, 51), timeout=30)

    page = await listing(api, label=f"t:{tag}")
    assert len(page["items"]) == 50 and page["next_cursor"]  # 50 by default, and more to come
    rest = await listing(api, label=f"t:{tag}", cursor=page["next_cursor"])
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    everything = await listing(api, label=f"t:{tag}", limit=500)
    assert len(everything["items"]) == 51 and everything["next_cursor"] is None
    resp = await api.get("/jobs", params={"label": f"t:{tag}", "limit": 501})
    assert resp.status_code == 422 and [e["field"] for e in resp.json()["errors"]] == ["limit"]


async def _count_is(api: httpx.AsyncClient, tag: str, count: int) -> bool:
    return len((await listing(api, label=f"t:{tag}", limit=500))["items"]) == count


# ---- hostile and malformed input --------------------------------------------------------------

@pytest.mark.parametrize(("path", "query", "field"), [
    ("/jobs", "state=running", "state"),
    ("/jobs", "state=active'--", "state"),
    ("/jobs", "label=no-colon", "label"),
    ("/jobs", "label=bad key:v", "label"),
    ("/jobs", "label=a:1&label=a:2", "label"),
    ("/jobs", "next_run_before=tomorrow", "next_run_before"),
    ("/jobs", "next_run_after=2026-01-01", "next_run_after"),
    ("/jobs", "created_after=2026-01-01T00:00:00", "created_after"),
    ("/jobs", "created_before=2026-01-01T00:00:00 01:00", "created_before"),
    ("/jobs", "created_before=0001-01-01T00:00:00%2B05:00", "created_before"),
    ("/jobs", "created_after=2027-01-01T00:00:00Z&created_before=2026-01-01T00:00:00Z",
     "created_after"),
    ("/jobs", "next_run_after=2026-01-01T00:00:00Z&next_run_before=2026-01-01T00:00:00Z",
     "next_run_after"),
    ("/jobs", "sort=created_at", "sort"),
    ("/jobs", "sort=name_asc;DROP%20TABLE%20jobs", "sort"),
    ("/jobs", "limit=0", "limit"),
    ("/jobs", "limit=-1", "limit"),
    ("/jobs", "limit=501", "limit"),
    ("/jobs", "limit=100000000000000000000000000000", "limit"),
    ("/jobs", "limit=abc", "limit"),
    ("/jobs", "limit=10&limit=20", "limit"),
    ("/jobs", "state=active&state=paused", "state"),
    ("/jobs", "cursor=%25%25%25", "cursor"),
    ("/jobs", "cursor=bm90IGEgY3Vyc29y", "cursor"),
    ("/jobs", "cursor=" + "A" * 3000, "cursor"),
    ("/jobs", "name=a%00b", "name"),
    ("/jobs", "q=%00", "q"),
    ("/jobs", "q=" + "x" * 201, "q"),
    ("/jobs", "schedule_type=weekly", "schedule_type"),
    ("/jobs", "target_type=ftp", "target_type"),
    ("/jobs", "stat=paused", "stat"),
    ("/runs", "status=exploded", "status"),
    ("/runs", "since=yesterday", "since"),
    ("/runs", "limit=0", "limit"),
    ("/runs", "job_id=", "job_id"),
    ("/runs", "cursor=garbage!", "cursor"),
    ("/runs", "status=failed&status=succeeded", "status"),
    ("/stats", "window=1h", "window"),
])
async def test_invalid_input_is_422_naming_the_field(api: httpx.AsyncClient, path: str,
                                                     query: str, field: str) -> None:
    resp = await api.get(f"{path}?{query}")
    assert resp.status_code == 422, (query, resp.text)
    assert resp.headers["content-type"].startswith(PROBLEM)
    body = resp.json()
    assert body["status"] == 422 and body["title"]
    assert field in [e["field"] for e in body["errors"]], body


async def test_a_cursor_only_works_with_the_sort_it_came_from(api: httpx.AsyncClient,
                                                              fleet: Fleet) -> None:
    page = await listing(api, label=f"t:{fleet.tag}", limit=2)
    cursor = page["next_cursor"]
    assert cursor
    for other in ("created_at_asc", "name_asc", "next_run_at_asc"):
        resp = await api.get("/jobs", params={"label": f"t:{fleet.tag}", "sort": other,
                                              "cursor": cursor})
        assert resp.status_code == 422, resp.text
        assert [e["field"] for e in resp.json()["errors"]] == ["cursor"]
    resp = await api.get("/runs", params={"cursor": cursor})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "cursor"
    # Filters may change between pages; the cursor is only a position in the sort.
    assert (await api.get("/jobs", params={"cursor": cursor, "state": "paused"})).status_code == 200


@pytest.mark.parametrize("value", [
    "' OR '1'='1", "x'); DROP TABLE jobs; --", "\\", "%", "_%_", "%' --", "$1", "$$", "::jsonb",
    "\u2603\U0001f600", "a" * 200, "' UNION SELECT * FROM jobs --",
])
async def test_sql_like_text_is_just_text(api: httpx.AsyncClient, fleet: Fleet, value: str) -> None:
    for param in ("q", "name"):
        resp = await api.get("/jobs", params={"label": f"t:{fleet.tag}", param: value})
        assert resp.status_code == 200, resp.text
        found = {j["job_id"] for j in resp.json()["items"]}
        assert found == ({fleet.ids["d"]} if param == "q" and value == "%" else set()), value
    resp = await api.get("/jobs", params={"label": f"t:{value[:60]}"})
    assert resp.status_code in (200, 422), resp.text
    resp = await api.get("/runs", params={"job_id": value})
    assert resp.status_code == 200 and resp.json()["items"] == []


async def test_odd_query_strings_never_fail_the_server(api: httpx.AsyncClient) -> None:
    for query in ("&&&", "=", "==x", "limit", "q", "label", "label=", "sort=", "cursor=",
                  "q=%FF%FE", "q=%ZZ", "%00=1", "label=%00:x", "label=k:%00",
                  "next_run_before=9999-12-31T23:59:59.999999Z",
                  "next_run_after=0001-01-01T00:00:00Z", "created_after=2026-02-30T00:00:00Z",
                  "limit=%2B5", "limit=5.0", "limit=%205", "limit=1e2"):
        for path in ("/jobs", "/runs", "/stats"):
            resp = await api.get(f"{path}?{query}")
            assert resp.status_code in (200, 422), (path, query, resp.status_code, resp.text)
            if resp.status_code == 422:
                assert resp.headers["content-type"].startswith(PROBLEM)


# ---- tenant isolation -------------------------------------------------------------------------

async def test_another_tenant_sees_none_of_it(api: httpx.AsyncClient, api_b: httpx.AsyncClient,
                                              pg: asyncpg.Pool[Any], sink: Sink, path: str,
                                              tag: str, jobs: Cleanup) -> None:
    job_id = await create(api, spec(f"{tag}-mine", tag, {"type": "now"},
                                    target={"type": "http", "url": sink.url(path)}))
    await sink.wait_for(path, 1, timeout=15)
    await eventually(lambda: _runs_of(api, job_id), timeout=20)
    b_job = await jobs.create(api_b, spec(f"{tag}-theirs", tag))
    mine, theirs = await tenant_of_job(pg, job_id), await tenant_of_job(pg, b_job)
    assert mine != theirs

    for query in (f"label=t:{tag}", f"name={tag}-mine", f"q={tag}", "q=mine"):
        page = await listing(api_b, **dict(parse_qsl(query)))
        assert job_id not in {j["job_id"] for j in page["items"]}, query
    assert [j["job_id"] for j in (await listing(api_b, label=f"t:{tag}"))["items"]] == [b_job]
    assert [j["job_id"] for j in (await listing(api, label=f"t:{tag}"))["items"]] == [job_id]
    assert (await listing(api_b, "/runs", job_id=job_id))["items"] == []
    for resp in (await api_b.get(f"/jobs/{job_id}"), await api_b.get(f"/jobs/{job_id}/preview")):
        assert resp.status_code == 404

    # Whatever tenant-b lists belongs to tenant-b.
    b_jobs = [j["job_id"] for j in (await listing(api_b, limit=500))["items"]]
    b_runs = [r["job_id"] for r in (await listing(api_b, "/runs", limit=500))["items"]]
    foreign = await pg.fetchval("SELECT count(*) FROM jobs WHERE job_id = ANY($1) AND tenant <> $2",
                                b_jobs + b_runs, theirs)
    assert foreign == 0

    # Stats count exactly the caller's own jobs (compared while nothing changed meanwhile).
    await eventually(lambda: _stats_match(api_b, pg, theirs), timeout=20)
    await eventually(lambda: _stats_match(api, pg, mine), timeout=20)


async def _runs_of(api: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await listing(api, "/runs", job_id=job_id))["items"]
    return items


async def _stats_match(api: httpx.AsyncClient, pg: asyncpg.Pool[Any], tenant: str) -> bool:
    sql = "SELECT state, count(*) FROM jobs WHERE tenant = $1 GROUP BY state"
    before = dict(await pg.fetch(sql, tenant))
    stats = (await listing(api, "/stats"))["jobs"]
    after = dict(await pg.fetch(sql, tenant))
    return before == after and {k: v for k, v in stats.items() if v} == after


# ---- runs and stats ---------------------------------------------------------------------------

async def test_runs_across_jobs(api: httpx.AsyncClient, sink: Sink, path: str, tag: str) -> None:
    ok = await create(api, spec(f"{tag}-ok", tag, {"type": "now"},
                                target={"type": "http", "url": sink.url(path)}))
    bad = await create(api, spec(f"{tag}-bad", tag, {"type": "now"},
                                 target={"type": "http", "url": NOWHERE, "timeout_seconds": 2},
                                 retry={"max_attempts": 1}))
    await wait_state(api, ok, "completed")
    await wait_state(api, bad, "completed")

    failed = (await listing(api, "/runs", status="failed", job_id=bad))["items"]
    assert len(failed) == 1 and failed[0]["job_id"] == bad and failed[0]["error"]
    assert (await listing(api, "/runs", status="succeeded", job_id=bad))["items"] == []
    succeeded = (await listing(api, "/runs", job_id=ok))["items"]
    assert [r["status"] for r in succeeded] == ["succeeded"]
    # The same run as the job's own listing shows.
    assert succeeded == (await listing(api, f"/jobs/{ok}/runs"))["items"]
    recent = (await listing(api, "/runs", since=succeeded[0]["updated_at"], limit=500))["items"]
    assert succeeded[0]["run_id"] in {r["run_id"] for r in recent}
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await listing(api, "/runs", since=future))["items"] == []

    # Newest change first, page after page: keys strictly descending, so no run twice. (Other
    # tests keep adding runs to this tenant, so only the first pages are walked.)
    runs = await walk(api, {"limit": 7}, path="/runs", max_pages=5)
    keys = [(datetime.fromisoformat(r["updated_at"]), r["run_id"]) for r in runs]
    assert len(keys) >= 2
    assert all(a > b for a, b in pairwise(keys))


@pytest.fixture
async def old_run(pg: asyncpg.Pool[Any], api_b: httpx.AsyncClient,
                  tag: str) -> AsyncIterator[str]:
    """A final run of tenant-b that changed two hours ago: in the last day, not the last hour.
    (No API can backdate a run, so it is written straight into job_runs, and removed after.)"""
    tenant = await _tenant_of_caller(api_b, pg, tag)
    run_id = f"stats-{tag}"
    await pg.execute(
        "INSERT INTO job_runs (run_id, job_id, tenant, scheduled_at, attempt, status,"
        " modified_at, final, lateness_ms, duration_ms) VALUES ($1, $2, $3,"
        " now() - interval '2 hours', 1, 'failed', now() - interval '2 hours', true, 9000, 700)",
        run_id, f"stats-job-{tag}", tenant)
    yield tenant
    await pg.execute("DELETE FROM job_runs WHERE run_id = $1", run_id)


async def _tenant_of_caller(api: httpx.AsyncClient, pg: asyncpg.Pool[Any], tag: str) -> str:
    job_id = await create(api, spec(f"{tag}-whoami", tag))
    await api.delete(f"/jobs/{job_id}")
    return await tenant_of_job(pg, job_id)


async def test_stats(api_b: httpx.AsyncClient, sink: Sink, path: str, tag: str,
                     jobs: Cleanup, pg: asyncpg.Pool[Any], old_run: str) -> None:
    ok = await jobs.create(api_b, spec(f"{tag}-ok", tag, {"type": "now"},
                                       target={"type": "http", "url": sink.url(path)}))
    bad = await jobs.create(api_b, spec(f"{tag}-bad", tag, {"type": "now"},
                                        target={"type": "http", "url": NOWHERE,
                                                "timeout_seconds": 2},
                                        retry={"max_attempts": 1}))
    await jobs.create(api_b, spec(f"{tag}-waiting", tag))
    await wait_state(api_b, ok, "completed")
    await wait_state(api_b, bad, "completed")

    # The figures are exactly what the tenant's own rows say (compared while nothing changed).
    got, expected = await eventually(lambda: _stats_if_stable(api_b, pg, old_run), timeout=20)
    assert got == expected
    assert got["jobs"]["completed"] >= 2 and got["jobs"]["active"] >= 1
    assert got["runs"]["last_hour"]["succeeded"] >= 1 and got["runs"]["last_hour"]["failed"] >= 1
    assert got["runs"]["last_day"]["failed"] >= got["runs"]["last_hour"]["failed"] + 1
    assert 0 < got["success_rate"]["last_day"] < 1


STATS_JOBS = "SELECT state, count(*) FROM jobs WHERE tenant = $1 GROUP BY state"
STATS_RUNS = """
SELECT status, final, lateness_ms, duration_ms, modified_at >= now() - interval '1 hour' AS hour
FROM job_runs WHERE tenant = $1 AND modified_at >= now() - interval '1 day'
ORDER BY run_id, attempt
"""


async def _stats_if_stable(api: httpx.AsyncClient, pg: asyncpg.Pool[Any],
                           tenant: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    before = (await pg.fetch(STATS_JOBS, tenant), await pg.fetch(STATS_RUNS, tenant))
    got = await listing(api, "/stats")
    after = (await pg.fetch(STATS_JOBS, tenant), await pg.fetch(STATS_RUNS, tenant))
    if [list(map(tuple, rows)) for rows in before] != [list(map(tuple, rows)) for rows in after]:
        return None
    return got, _expected_stats(*after)


def _expected_stats(job_rows: list[Any], run_rows: list[Any]) -> dict[str, Any]:
    """GET /stats as API.md defines it, computed here from the rows."""
    statuses = get_args(RunStatus)  # the contract's statuses (API.md says "scheduled", not "queued")
    jobs = dict.fromkeys(("active", "paused", "cancelled", "completed"), 0)
    jobs.update({state: n for state, n in job_rows})
    hour = [r for r in run_rows if r["hour"]]
    runs = {window: {s: sum(1 for r in rows if r["status"] == s) for s in statuses}
            for window, rows in (("last_hour", hour), ("last_day", run_rows))}

    def rate(rows: list[Any]) -> float | None:
        done = [r for r in rows if r["final"] and r["status"] in ("succeeded", "failed",
                                                                   "timed_out")]
        ok = [r for r in done if r["status"] == "succeeded"]
        return len(ok) / len(done) if done else None

    late = sorted(r["lateness_ms"] for r in run_rows if r["lateness_ms"] is not None)
    durations = [r["duration_ms"] for r in run_rows if r["duration_ms"] is not None]
    return {
        "jobs": jobs, "runs": runs,
        "success_rate": {"last_hour": rate(hour), "last_day": rate(run_rows)},
        "lateness_ms": {"p50": _percentile(late, 0.5), "p99": _percentile(late, 0.99)},
        "mean_duration_ms": pytest.approx(sum(durations) / len(durations)) if durations else None,
    }


def _percentile(values: list[int], p: float) -> Any:
    """Linear interpolation between closest ranks, as Postgres' percentile_cont."""
    if not values:
        return None
    pos = p * (len(values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return pytest.approx(values[lo] + (values[hi] - values[lo]) * (pos - lo))


# ---- preview ----------------------------------------------------------------------------------

async def test_preview(api: httpx.AsyncClient, tag: str, jobs: Cleanup) -> None:
    cron = await jobs.create(api, spec(f"{tag}-cron", tag,
                                  {"type": "cron", "expression": "0 30 2 * * *",
                                   "timezone": "Europe/Berlin"}))
    times = (await listing(api, f"/jobs/{cron}/preview", count=3))["next_run_times"]
    assert len(times) == 3
    instants = [datetime.fromisoformat(t) for t in times]
    assert instants[0] > datetime.now(UTC)
    assert all(b - a in (timedelta(hours=23), timedelta(hours=24), timedelta(hours=25))
               for a, b in pairwise(instants))
    assert len((await listing(api, f"/jobs/{cron}/preview"))["next_run_times"]) == 10
    assert len((await listing(api, f"/jobs/{cron}/preview", count=1000))["next_run_times"]) == 1000

    once = await create(api, spec(f"{tag}-once", tag))
    assert (await listing(api, f"/jobs/{once}/preview"))["next_run_times"] == ["2099-01-01T00:00:00Z"]
    for bad in ("count=0", "count=1001", "count=x", "count=1&count=2", "other=1"):
        resp = await api.get(f"/jobs/{once}/preview?{bad}")
        assert resp.status_code == 422, bad
        assert resp.headers["content-type"].startswith(PROBLEM)
    assert (await api.get("/jobs/nope/preview")).status_code == 404

    await api.delete(f"/jobs/{once}")
    await wait_state(api, once, "cancelled")
    assert (await listing(api, f"/jobs/{once}/preview"))["next_run_times"] == []


# ---- query plans ------------------------------------------------------------------------------

QUERIES = load_queries("search_service")
PLAN_CASES = ["", "state=paused", "name=invoice-1234", "q=voice-123", "q=zq", "label=team:team-07",
              "label=team:nobody", "next_run_before=2090-01-02T00:00:00Z",
              "next_run_after=2099-12-01T00:00:00Z",
              "created_after=2026-01-01T00:00:00Z&created_before=2026-01-02T00:00:00Z",
              "sort=created_at_asc", "sort=next_run_at_asc", "sort=name_asc",
              "state=active&sort=next_run_at_asc&label=env:prod"]


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(plan["Node Type"], plan.get("Relation Name", ""))]
    for child in plan.get("Plans", []):
        found.extend(_scans(child))
    return found


async def test_listings_use_indexes_not_seq_scans(pg: asyncpg.Pool[Any]) -> None:
    """The plans of the real list queries on 20,000 jobs, with the migration's indexes.

    The data lives in a temporary table shadowing `jobs` (same columns and indexes), so the test
    has real statistics to plan with and touches nothing other tests or services can see.
    """
    async with pg.acquire() as conn, conn.transaction():
        await conn.execute("CREATE TEMP TABLE jobs (LIKE public.jobs INCLUDING ALL) ON COMMIT DROP")
        await conn.execute("CREATE TEMP TABLE job_runs (LIKE public.job_runs INCLUDING ALL) "
                           "ON COMMIT DROP")
        await _same_statistics_targets(conn, "jobs")
        # The benchmark's generator and distributions (bench/seed_jobs.py).
        await conn.execute(SEED_INSERT, "plans", 1, 16000, 16000)
        await conn.execute(SEED_INSERT, "other", 16001, 20000, 20000)
        await conn.execute(_RUNS_INSERT)
        await conn.execute("ANALYZE jobs")
        await conn.execute("ANALYZE job_runs")
        for query in PLAN_CASES:
            st = jobs_statement(parse_query(JobsQuery, parse_qsl(query)), "plans")
            await _assert_index_plan(conn, QUERIES[st.query], st.args, "jobs", query)
        for query in ("", "status=failed", "job_id=j1", "since=2026-01-01T00:00:00Z"):
            st = runs_statement(parse_query(RunsQuery, parse_qsl(query)), "plans")
            await _assert_index_plan(conn, QUERIES[st.query], st.args, "job_runs", query)



# The created_at listings with label (and state) filters only, on labels many jobs carry (a
# label no job carries is answered from jobs_labels, the GIN index, without these scans).
LABEL_CASES = ["label=team:team-07", "state=active&label=team:team-07",
               "sort=created_at_asc&state=paused&label=env:prod&label=team:team-07"]


async def test_label_filters_read_labels_from_the_index(pg: asyncpg.Pool[Any]) -> None:
    """A label filter on the created_at listings rejects rows without reading them: the page's ids
    come from an index-only scan of jobs_tenant_(state_)created, which carry labels (ADR 0046).

    A session's temporary table shadows `jobs` (same columns and indexes) so it can be vacuumed,
    as a settled table is, outside a transaction; it is dropped at the end.
    """
    async with pg.acquire() as conn:
        await conn.execute("CREATE TEMP TABLE jobs (LIKE public.jobs INCLUDING ALL)")
        await _same_statistics_targets(conn, "jobs")
        try:
            await conn.execute(SEED_INSERT, "plans", 1, 20000, 20000)
            await conn.execute("VACUUM (ANALYZE) pg_temp.jobs")
            for query in LABEL_CASES:
                st = jobs_statement(parse_query(JobsQuery, parse_qsl(query)), "plans")
                raw = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + QUERIES[st.query],
                                          *st.args)
                nodes = _nodes(json.loads(raw)[0]["Plan"])
                only = [n for n in nodes if n["Node Type"] == "Index Only Scan"]
                # LIKE ... INCLUDING ALL names the copies by their columns:
                # jobs_tenant_(state_)created_at_job_id_labels_idx.
                assert len(only) == 1, (query, nodes)
                assert only[0]["Index Name"].endswith("created_at_job_id_labels_idx"), query
                assert only[0]["Heap Fetches"] == 0, query
                rows = await conn.fetch(QUERIES[st.query], *st.args)
                assert rows == await conn.fetch(_ONE_STEP[st.query], *st.args), query
        finally:
            await conn.execute("DROP TABLE pg_temp.jobs")


async def _same_statistics_targets(conn: Any, table: str) -> None:
    """`LIKE ... INCLUDING ALL` copies no column's statistics target: give the shadow the real
    table's (migration 0014 gives `labels` 1000, ADR 0047), or its label estimates — and so its
    plans — depend on ANALYZE's sample as the real table's did before that migration."""
    rows = await conn.fetch("SELECT attname, attstattarget FROM pg_attribute"
                            " WHERE attrelid = $1::regclass AND attstattarget > 0"
                            " AND NOT attisdropped", f"public.{table}")
    assert rows, "the real table sets no statistics target: this helper guards nothing"
    for row in rows:
        await conn.execute(f'ALTER TABLE pg_temp.{table} ALTER COLUMN "{row["attname"]}"'
                           f' SET STATISTICS {int(row["attstattarget"])}')


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


# Each labelled listing and the plain one of its sort: they must return the same rows.
_ONE_STEP = {f"{name}_labelled": QUERIES[name]
             for name in ("list_jobs_created_desc", "list_jobs_created_asc")}

_RUNS_INSERT = """
INSERT INTO job_runs (run_id, job_id, tenant, scheduled_at, attempt, status, modified_at, final)
SELECT md5(i::text), 'j' || i % 500, CASE WHEN i % 5 = 0 THEN 'other' ELSE 'plans' END,
       now() - i * interval '1 second', 1,
       CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END, now() - i * interval '1 second', true
FROM generate_series(1, 20000) AS i
"""


async def _assert_index_plan(conn: Any, sql: str, args: tuple[Any, ...], table: str,
                             query: str) -> None:
    raw = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    scans = _scans(json.loads(raw)[0]["Plan"])
    assert ("Seq Scan", table) not in scans, (query, scans)
    assert any(node.startswith(("Index", "Bitmap Index")) for node, _ in scans), (query, scans)


async def test_concurrent_readers_do_not_error(api: httpx.AsyncClient, fleet: Fleet) -> None:
    queries = ["", "state=active", "sort=name_asc", "q=alph", "label=team:red", "sort=next_run_at_asc"]
    responses = await asyncio.gather(*(api.get(f"/jobs?label=t:{fleet.tag}&{q}")
                                       for q in queries * 5))
    assert all(r.status_code == 200 for r in responses)


# Two labels ~0.7 % of the seeded jobs carry together (bench/seed_jobs.py: 50 teams x 3 envs).
_TWO_LABELS = "label=team:team-07&label=env:prod"


async def test_label_estimates_do_not_depend_on_analyzes_sample(pg: asyncpg.Pool[Any]) -> None:
    """The planner's row estimate for a label filter is near the truth after every ANALYZE
    (migration 0014, ADR 0047). Which plan that estimate picks depends on the table's size: on
    1,000,000 jobs an estimate near 0 sent the newest-first listing to the GIN index, reading
    and sorting every labelled job (15-50 ms) instead of walking its index (~2 ms; the ADR).

    On the real `jobs` table (its column statistics target is what is tested), inside a
    transaction that is rolled back: the rows and the statistics ANALYZE writes are never seen.
    """
    async with pg.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute(SEED_INSERT, "estimates", 1, 100_000, 100_000)
            params = parse_query(JobsQuery, parse_qsl(_TWO_LABELS))
            wanted = json.dumps(params.labels)
            actual = await conn.fetchval("SELECT count(*) FROM jobs WHERE labels @> $1::jsonb",
                                         wanted)
            for _ in range(3):  # each ANALYZE draws a new sample
                await conn.execute("ANALYZE jobs")
                raw = await conn.fetchval("EXPLAIN (FORMAT JSON) SELECT 1 FROM jobs "
                                          "WHERE labels @> $1::jsonb", wanted)
                estimate = json.loads(raw)[0]["Plan"]["Plan Rows"]
                assert actual / 2 <= estimate <= actual * 2, (estimate, actual)
        finally:
            await tx.rollback()
