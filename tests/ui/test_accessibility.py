"""An accessibility smoke check of the dashboard: every form control has a label on every page,
and the main flow (log in, skip to the content, open a job, log out) works with the keyboard
alone."""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Page, expect

from tests.support.jobs import Cleanup, http_job
from tests.support.sink import Sink
from tests.ui.conftest import log_in

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby') && !(el.tagName === 'BUTTON' && el.innerText.trim()))
  .map(el => el.outerHTML)"""


async def _unlabelled(page: Page) -> list[str]:
    found: list[str] = await page.evaluate(UNLABELLED)
    return found


async def test_every_control_on_every_page_has_a_label(
    page: Page, api: httpx.AsyncClient, jobs: Cleanup, sink: Sink, env: dict[str, str],
) -> None:
    job_id = await jobs.create(api, http_job(sink.url("/ui/a11y"), {"type": "once",
                                                                   "at": "2099-01-01T00:00:00Z"}))
    await page.goto("/ui/login")
    assert await _unlabelled(page) == [], "login"
    await log_in(page, env["DUETIME_API_KEY"])
    for path in ("/ui/jobs?label=team:a", f"/ui/jobs/{job_id}", "/ui/failures", "/ui/alerts",
                 "/ui/overview"):
        await page.goto(path)
        assert await _unlabelled(page) == [], path


async def _tab_to(page: Page, text: str, limit: int = 80) -> None:
    for _ in range(limit):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.innerText") == text:
            return
    raise AssertionError(f"{text!r} cannot be reached with Tab")


async def test_the_main_flow_works_with_the_keyboard_alone(
    page: Page, api: httpx.AsyncClient, jobs: Cleanup, sink: Sink, env: dict[str, str],
) -> None:
    name = f"ui-keyboard-{uuid.uuid4().hex[:8]}"
    job_id = await jobs.create(api, http_job(sink.url("/ui/keys"), {"type": "once",
                                                                   "at": "2099-01-01T00:00:00Z"},
                                             name=name))
    await page.goto(f"/ui/jobs?q={name}")
    # The login form puts the focus in the key field: type, Enter. (Typing before the focus got
    # there lost the key's first characters on a busy box: wait for it, as a person would.)
    await expect(page.get_by_label("API key")).to_be_focused()
    await page.keyboard.type(env["DUETIME_API_KEY"])
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("link", name=name)).to_be_visible()
    # The first Tab reaches the skip link, which moves the focus past the navigation.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.innerText") == "Skip to content"
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"/ui/jobs?q={name}#main")
    await _tab_to(page, name)
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"/ui/jobs/{job_id}")
    await page.keyboard.press("Shift+Tab")  # from the page body back up to the header
    await _tab_to(page, "Log out")
    await page.keyboard.press("Enter")
    await expect(page.get_by_label("API key")).to_be_focused()
