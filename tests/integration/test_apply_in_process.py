"""POST /jobs:apply in process (job_service/apply.py, ADR 0037) on the stack's real Kafka,
Postgres and Redis; the stack's writer stores what it publishes. Each test watches the commands
the service publishes, so "nothing was sent" is seen, not assumed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import yaml
from redis.asyncio import Redis

from duetime.settings import QuotaSettings
from job_service.manifest import MAX_BODY_BYTES, MAX_ITEMS
from tests.support.job_service import InProcess, job_service
from tests.support.problems import problem
from tests.support.waiting import eventually

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
async def service(env: dict[str, str], redis: Redis) -> AsyncIterator[InProcess]:
    async with job_service(env, redis) as svc:
        yield svc
        for tenant in {c["tenant"] for c in svc.producer.commands}:
            client = svc.client(tenant)
            for cmd in svc.published(tenant, "create"):
                await client.delete(f"/jobs/{cmd['job_id']}")


@pytest.fixture
def pg(service: InProcess) -> asyncpg.Pool[Any]:
    """The service's own pool: it reads jsonb as Python values."""
    return service.pool


def tenant() -> str:
    return f"apply-{uuid.uuid4().hex[:10]}"


def steps_job(name: str, run: str = "make test", **extra: Any) -> dict[str, Any]:
    """Seed 003's shorthand; daily at midnight, so nothing fires during a test."""
    return {"name": name, "schedule": "0 0 * * *", "steps": [{"name": "test", "run": run}],
            **extra}


async def apply(client: httpx.AsyncClient, jobs: Any, *, dry_run: bool = False,
                status: int | None = None) -> dict[str, Any]:
    resp = await client.post("/jobs:apply", params={"dry_run": "true"} if dry_run else {},
                             content=yaml.safe_dump({"jobs": jobs}), headers=YAML)
    assert resp.status_code == (status or (200 if dry_run else 202)), resp.text
    body: dict[str, Any] = resp.json()
    return body


async def stored(pg: asyncpg.Pool[Any], job_id: str) -> asyncpg.Record | None:
    return await pg.fetchrow("SELECT tenant, name, spec, version, state FROM jobs "
                             "WHERE job_id = $1", job_id)


async def persisted(pg: asyncpg.Pool[Any], job_id: str, version: int = 1) -> asyncpg.Record:
    async def found() -> asyncpg.Record | None:
        row = await stored(pg, job_id)
        return row if row is not None and row["version"] >= version else None
    return await eventually(found, timeout=20)


async def test_create_then_reapply_unchanged_sends_nothing(
    service: InProcess, pg: asyncpg.Pool[Any],
) -> None:
    me = tenant()
    client = service.client(me)
    jobs = [steps_job("build"), steps_job("cleanup", run="./cleanup.sh", run_once=True,
                                          priority=8)]
    first = await apply(client, jobs)
    assert [(i["name"], i["result"]) for i in first["items"]] == [("build", "created"),
                                                                   ("cleanup", "created")]
    assert (first["created"], first["updated"], first["unchanged"]) == (2, 0, 0)
    for item in first["items"]:
        row = await persisted(pg, item["job_id"])
        assert (row["tenant"], row["name"]) == (me, item["name"])
    cleanup = await stored(pg, first["items"][1]["job_id"])
    assert cleanup is not None
    assert cleanup["spec"]["max_runs"] == 1 and cleanup["spec"]["target"]["type"] == "steps"
    sent = len(service.published(me))
    again = await apply(client, jobs)
    assert [i["result"] for i in again["items"]] == ["unchanged", "unchanged"]
    assert [i["job_id"] for i in again["items"]] == [i["job_id"] for i in first["items"]]
    assert len(service.published(me)) == sent, "an unchanged apply sent a command"


async def test_a_change_is_an_update_with_its_diff_and_dry_run_sends_nothing(
    service: InProcess, pg: asyncpg.Pool[Any],
) -> None:
    me = tenant()
    client = service.client(me)
    [made] = (await apply(client, [steps_job("build")]))["items"]
    await persisted(pg, made["job_id"])
    changed = [steps_job("build", run="make check", priority=9, labels={"team": "ci"})]
    sent = len(service.published(me))
    preview = await apply(client, changed, dry_run=True)
    assert preview["dry_run"] is True
    assert len(service.published(me)) == sent, "a dry run sent a command"
    [item] = preview["items"]
    assert (item["result"], item["job_id"]) == ("updated", made["job_id"])
    assert {c["path"]: (c["from"], c["to"]) for c in item["changes"]} == {
        "target.steps[0].run": ("make test", "make check"), "priority": (5, 9),
        "labels.team": (None, "ci")}
    done = await apply(client, changed)
    assert done["items"] == preview["items"]  # the dry run said exactly what happened
    assert [c["type"] for c in service.published(me)[sent:]] == ["update"]
    row = await persisted(pg, made["job_id"], version=2)
    assert row["spec"]["target"]["steps"][0]["run"] == "make check"
    assert row["spec"]["priority"] == 9


async def test_another_tenants_job_of_the_same_name_is_never_touched(
    service: InProcess, pg: asyncpg.Pool[Any],
) -> None:
    theirs, mine = tenant(), tenant()
    [other] = (await apply(service.client(theirs), [steps_job("shared-name")]))["items"]
    before = await persisted(pg, other["job_id"])
    [item] = (await apply(service.client(mine), [steps_job("shared-name", run="rm -rf /job")]))[
        "items"]
    assert item["result"] == "created" and item["job_id"] != other["job_id"]
    row = await persisted(pg, item["job_id"])
    assert row["tenant"] == mine
    after = await stored(pg, other["job_id"])
    assert after is not None
    assert (after["tenant"], after["version"], after["spec"]) == (theirs, before["version"],
                                                                  before["spec"])
    assert all(c["job_id"] != other["job_id"] for c in service.published(mine))


async def test_a_name_several_jobs_have_is_a_422_not_a_guess(
    service: InProcess, pg: asyncpg.Pool[Any],
) -> None:
    me = tenant()
    client = service.client(me)
    spec = {"name": "twice", "schedule": {"type": "cron", "expression": "0 0 * * *"},
            "target": {"type": "steps", "steps": [{"name": "a", "run": "true"}]}}
    for _ in range(2):
        resp = await client.post("/jobs", json=spec)
        assert resp.status_code == 202, resp.text
        await persisted(pg, resp.json()["job_id"])
    sent = len(service.published(me))
    resp = await client.post("/jobs:apply", content=orjson.dumps(
        [steps_job("fine"), steps_job("twice")]), headers={"Content-Type": "application/json"})
    body = problem(resp, 422)
    assert [e["field"] for e in body["errors"]] == ["jobs[1].name"]
    assert "2 jobs" in body["errors"][0]["message"]
    assert len(service.published(me)) == sent  # not even the fine one


async def test_a_cancelled_job_is_not_updated_a_new_one_is_made(
    service: InProcess, pg: asyncpg.Pool[Any],
) -> None:
    me = tenant()
    client = service.client(me)
    [first] = (await apply(client, [steps_job("phoenix")]))["items"]
    await persisted(pg, first["job_id"])
    assert (await client.delete(f"/jobs/{first['job_id']}")).status_code == 202
    await persisted(pg, first["job_id"], version=2)
    [second] = (await apply(client, [steps_job("phoenix")]))["items"]
    assert second["result"] == "created" and second["job_id"] != first["job_id"]
    row = await persisted(pg, second["job_id"])
    assert row["state"] == "active"


async def test_reapplied_before_the_writer_stored_it_names_the_same_job(
    service: InProcess, pg: asyncpg.Pool[Any],
) -> None:
    """A retried apply (after a 503, or at once) makes no second job: a new job's id comes from
    its name."""
    me = tenant()
    client = service.client(me)
    one = await apply(client, [steps_job("retried")])
    two = await apply(client, [steps_job("retried")])
    assert one["items"][0]["job_id"] == two["items"][0]["job_id"]
    await persisted(pg, one["items"][0]["job_id"])
    rows = await pg.fetch("SELECT job_id FROM jobs WHERE tenant = $1 AND name = 'retried'", me)
    assert len(rows) == 1


async def test_every_item_is_checked_before_any_is_applied(service: InProcess) -> None:
    me = tenant()
    client = service.client(me)
    jobs = [steps_job("ok"),
            steps_job("bad-cron", schedule="61 * * * *"),
            {"name": "bad-type", "schedule": "* * * * *", "priority": "high",
             "steps": [{"name": "s", "run": "true"}]},
            {**steps_job("unknown-field"), "colour": "blue"},
            {"name": "no-target", "schedule": "* * * * *"},
            steps_job("ok")]
    resp = await client.post("/jobs:apply", content=yaml.safe_dump(jobs), headers=YAML)
    body = problem(resp, 422)
    fields = [e["field"] for e in body["errors"]]
    assert "jobs[1].schedule" in fields
    assert "jobs[2].priority" in fields
    assert "jobs[3].colour" in fields
    assert "jobs[4].target" in fields
    assert "jobs[5].name" in fields  # the same name as jobs[0]
    assert any("'bad-cron'" in e["message"] for e in body["errors"])
    assert service.published(me) == []


@pytest.mark.parametrize("content, content_type, status", [
    (b"jobs: [", "application/yaml", 400),
    (b'a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\njobs: *c\n', "application/yaml", 400),
    (b"{not json", "application/json", 400),
    (b"jobs: []", "application/yaml", 422),
    (b"jobs: 7", "text/yaml", 422),
    (b"- name: x\n", "text/plain", 415),
    (b"", "application/json", 400),
])
async def test_hostile_bodies_get_a_clear_error_and_send_nothing(
    service: InProcess, content: bytes, content_type: str, status: int,
) -> None:
    me = tenant()
    resp = await service.client(me).post("/jobs:apply", content=content,
                                         headers={"Content-Type": content_type})
    problem(resp, status)
    assert service.published(me) == []


async def test_bounds_of_count_size_and_parameters(service: InProcess) -> None:
    me = tenant()
    client = service.client(me)
    many = orjson.dumps([steps_job(f"j{i}") for i in range(MAX_ITEMS + 1)])
    assert len(many) < MAX_BODY_BYTES  # refused for its count, not its size
    body = problem(await client.post("/jobs:apply", content=many,
                                     headers={"Content-Type": "application/json"}), 422)
    assert body["errors"][0]["field"] == "jobs" and str(MAX_ITEMS) in body["detail"]
    big = orjson.dumps([steps_job("big", run="x" * MAX_BODY_BYTES)])
    problem(await client.post("/jobs:apply", content=big,
                              headers={"Content-Type": "application/json"}), 413)
    for query in ("dry_run=maybe", "force=true", "dry_run=1&dry_run=0"):
        problem(await client.post(f"/jobs:apply?{query}", content=b"[]",
                                  headers={"Content-Type": "application/json"}), 422)
    assert service.published(me) == []


async def test_500_jobs_in_one_apply(service: InProcess, pg: asyncpg.Pool[Any]) -> None:
    me = tenant()
    client = service.client(me)
    jobs = [steps_job(f"many-{i}") for i in range(MAX_ITEMS)]
    done = await apply(client, jobs)
    assert done["created"] == MAX_ITEMS
    await persisted(pg, done["items"][-1]["job_id"])
    count = await eventually(lambda: _count_if(pg, me, MAX_ITEMS), timeout=30)
    assert count == MAX_ITEMS


async def _count_if(pg: asyncpg.Pool[Any], me: str, wanted: int) -> int | None:
    count: int = await pg.fetchval("SELECT count(*) FROM jobs WHERE tenant = $1", me)
    return count if count == wanted else None


async def test_a_job_faster_than_the_whole_quota_is_refused_before_anything_is_sent(
    env: dict[str, str], redis: Redis,
) -> None:
    me = tenant()
    async with job_service(env, redis, QuotaSettings(quota_firings_per_second=0.5)) as svc:
        resp = await svc.client(me).post("/jobs:apply", content=yaml.safe_dump([
            steps_job("daily"), steps_job("every-second", schedule="* * * * * *")]),
            headers=YAML)
        body = problem(resp, 422)
        assert [e["field"] for e in body["errors"]] == ["jobs[1].schedule"]
        assert svc.published(me) == []
