"""The dashboard in a real browser (issue 10): jobs created through the API appear, filter,
open, update live, and a failure leads to its error; another tenant never sees them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from playwright.async_api import Page, expect

from tests.support.jobs import Cleanup, http_job, wait_runs
from tests.support.sink import Sink
from tests.ui.conftest import log_in, screenshot

FAR_FUTURE = {"type": "once", "at": "2099-01-01T00:00:00Z"}


def _at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def _two_jobs(api: httpx.AsyncClient, jobs: Cleanup, sink: Sink, tag: str) -> dict[str, str]:
    ids = {}
    for name, team in (("alpha", "payments"), ("beta", "search")):
        spec = http_job(sink.url(f"/ui/{tag}/{name}"), FAR_FUTURE, name=f"ui-{tag}-{name}",
                        labels={"team": team})
        ids[name] = await jobs.create(api, spec)
    return ids


async def test_jobs_appear_filter_in_the_url_and_open(
    page: Page, api: httpx.AsyncClient, jobs: Cleanup, sink: Sink, env: dict[str, str],
) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = await _two_jobs(api, jobs, sink, tag)
    await log_in(page, env["DUETIME_API_KEY"])
    await expect(page).to_have_url("/ui/jobs")
    await expect(page.get_by_role("link", name=f"ui-{tag}-alpha")).to_be_visible()
    await expect(page.get_by_role("link", name=f"ui-{tag}-beta")).to_be_visible()
    await screenshot(page, "jobs")

    await page.get_by_label("Search names").fill(f"{tag}-al")
    await page.get_by_label("Label (key:value)").fill("team:payments")
    await page.get_by_role("button", name="Apply").click()
    await expect(page.get_by_role("link", name=f"ui-{tag}-alpha")).to_be_visible()
    await expect(page.get_by_role("link", name=f"ui-{tag}-beta")).to_have_count(0)
    # The view is in the URL, with GET /jobs's own parameter names: it can be shared.
    query = parse_qs(urlsplit(page.url).query)
    assert query["q"] == [f"{tag}-al"] and query["label"] == ["team:payments"]
    listed = (await api.get("/jobs", params={"q": f"{tag}-al", "label": "team:payments"})).json()
    assert [j["job_id"] for j in listed["items"]] == [ids["alpha"]]

    await page.get_by_role("link", name=f"ui-{tag}-alpha").click()
    await expect(page).to_have_url(f"/ui/jobs/{ids['alpha']}")
    await expect(page.get_by_role("heading", level=1)).to_contain_text(f"ui-{tag}-alpha")
    await expect(page.locator("pre.spec")).to_contain_text('"team": "payments"')


async def test_keyset_paging_keeps_the_filters(
    page: Page, api: httpx.AsyncClient, jobs: Cleanup, sink: Sink, env: dict[str, str],
) -> None:
    tag = uuid.uuid4().hex[:8]
    await _two_jobs(api, jobs, sink, tag)
    await log_in(page, env["DUETIME_API_KEY"], f"/ui/jobs?q={tag}&sort=name_asc&limit=1")
    await expect(page.get_by_role("link", name=f"ui-{tag}-alpha")).to_be_visible()
    await page.get_by_role("link", name="Next page").click()
    await expect(page.get_by_role("link", name=f"ui-{tag}-beta")).to_be_visible()
    await expect(page.get_by_role("link", name=f"ui-{tag}-alpha")).to_have_count(0)
    query = parse_qs(urlsplit(page.url).query)
    assert query["q"] == [tag] and query["sort"] == ["name_asc"] and query["cursor"]


async def test_a_jobs_runs_update_live_without_reloading(
    page: Page, api: httpx.AsyncClient, jobs: Cleanup, sink: Sink, env: dict[str, str],
) -> None:
    tag = uuid.uuid4().hex[:8]
    schedule = {"type": "interval", "every_seconds": 2, "start_at": _at(6)}
    job_id = await jobs.create(api, http_job(sink.url(f"/ui/{tag}"), schedule, name=f"ui-{tag}-live"))
    await log_in(page, env["DUETIME_API_KEY"], f"/ui/jobs/{job_id}")
    await expect(page.locator("#runs")).to_contain_text("No runs yet")
    await page.evaluate("window.__sameDocument = true")
    await expect(page.locator("#runs .status-succeeded").first).to_be_visible(timeout=30_000)
    # Still the page that was opened: the rows came by polling, not by a reload.
    assert await page.evaluate("window.__sameDocument === true")
    await expect(page.locator("table.fires tbody tr")).to_have_count(10)
    await screenshot(page, "job")


async def test_a_failure_leads_to_its_error(
    page: Page, api: httpx.AsyncClient, jobs: Cleanup, make_sink: Any, env: dict[str, str],
) -> None:
    failing = await make_sink(status=500)
    tag = uuid.uuid4().hex[:8]
    spec = http_job(failing.url(f"/ui/{tag}"), {"type": "now"}, name=f"ui-{tag}-failing",
                    retry={"max_attempts": 1})
    job_id = await jobs.create(api, spec)
    failed = await wait_runs(api, job_id, "failed", timeout=30)
    error = failed[0]["error"]
    assert error
    await log_in(page, env["DUETIME_API_KEY"], "/ui/failures")
    group = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"ui-{tag}-failing"))
    await expect(group).to_contain_text(error)
    await screenshot(page, "failures")
    await group.get_by_role("link", name=f"ui-{tag}-failing").click()
    await expect(page).to_have_url(f"/ui/jobs/{job_id}?run_status=failed#run-{failed[0]['run_id']}")
    row = page.locator(f"#run-{failed[0]['run_id']}")
    await expect(row).to_contain_text(error)
    await expect(row).to_contain_text("500")
    # The same failure among the tenant's alerts, linked to its run.
    await page.get_by_role("link", name="Alerts").click()
    alert = page.get_by_role("row").filter(has=page.get_by_role("link", name=job_id))
    await expect(alert.first).to_contain_text("failure", timeout=30_000)
    await screenshot(page, "alerts")


async def test_skipped_runs_show_their_reason(
    page: Page, api: httpx.AsyncClient, jobs: Cleanup, make_sink: Any, env: dict[str, str],
) -> None:
    slow = await make_sink(delay_seconds=2.5)
    tag = uuid.uuid4().hex[:8]
    spec = http_job(slow.url(f"/ui/{tag}"), {"type": "interval", "every_seconds": 1},
                    name=f"ui-{tag}-overlapping", overlap="forbid", retry={"max_attempts": 1})
    job_id = await jobs.create(api, spec)
    skipped = await wait_runs(api, job_id, "skipped", timeout=30)
    assert skipped[0]["reason"]
    await log_in(page, env["DUETIME_API_KEY"], f"/ui/jobs/{job_id}?run_status=skipped")
    row = page.locator(f"#run-{skipped[0]['run_id']}")
    await expect(row.locator(".status")).to_have_text("skipped")
    await expect(row.locator(".reason")).to_have_text(skipped[0]["reason"])
    await expect(page.locator("#runs svg rect.mark-skipped").first).to_be_attached()


async def test_another_tenant_never_sees_them(
    page: Page, api: httpx.AsyncClient, jobs: Cleanup, sink: Sink, env: dict[str, str],
) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = await _two_jobs(api, jobs, sink, tag)
    await log_in(page, env["DUETIME_API_KEY_B"], f"/ui/jobs?q={tag}")
    await expect(page.get_by_text("No jobs match.")).to_be_visible()
    await expect(page.get_by_role("link", name=re.compile(tag))).to_have_count(0)
    resp = await page.goto(f"/ui/jobs/{ids['alpha']}")
    assert resp is not None and resp.status == 404
    await expect(page.get_by_text(f"ui-{tag}-alpha")).to_have_count(0)
    runs = await page.request.get(f"/ui/jobs/{ids['alpha']}/runs")
    assert runs.status == 404 and ids["alpha"] not in await runs.text()
    await page.goto("/ui/failures?window=day")
    await expect(page.get_by_text(tag)).to_have_count(0)
    assert tag not in await page.content()


async def test_overview_says_where_numbers_come_from_and_refreshes(
    page: Page, env: dict[str, str],
) -> None:
    await log_in(page, env["DUETIME_API_KEY"], "/ui/overview")
    await expect(page.get_by_text("From your own runs in Postgres")).to_be_visible()
    await expect(page.get_by_text("From Prometheus (all tenants together")).to_be_visible()
    await expect(page.get_by_role("img", name="Lateness of runs in ms, last hour")).to_be_visible()
    await expect(page.get_by_role("img", name="Runs per minute, last hour")).to_be_visible()
    await expect(page.locator("#overview")).to_have_attribute("data-refreshed", re.compile(r"^\d+$"),
                                                              timeout=15_000)
    await screenshot(page, "overview")


async def test_logout_ends_the_session(page: Page, env: dict[str, str]) -> None:
    await log_in(page, env["DUETIME_API_KEY"])
    [cookie] = [c for c in await page.context.cookies() if c["name"] == "duetime_ui"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url("/ui/login")
    assert not [c for c in await page.context.cookies() if c["name"] == "duetime_ui"]
    await page.goto("/ui/jobs")
    await expect(page.get_by_label("API key")).to_be_visible()


async def test_an_unknown_key_is_sent_back_to_the_login_page(page: Page) -> None:
    await log_in(page, "dtk_not-a-key-anyone-has", "/ui/failures")
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    assert not [c for c in await page.context.cookies() if c["name"] == "duetime_ui"]
    await screenshot(page, "login")
