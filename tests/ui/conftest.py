"""The dashboard's browser tests: Playwright driving Debian's chromium (`make browser` installs
it; Playwright's own browser download is not used), against the gateway of the running stack.
Every test leaves a full-page screenshot under .artifacts/ui/ (gitignored)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "ui"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = os.environ.get("DUETIME_CHROMIUM") or shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: `make browser` installs it")
    # Chromium's sandbox refuses to start as root, which is who runs CI here.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=args)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser, env: dict[str, str],
               request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=env["DUETIME_URL"],
                                        viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    yield opened
    await screenshot(opened, f"{request.node.name}-end")
    await context.close()


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png")
    await page.screenshot(path=path, full_page=True)
    return path


async def log_in(page: Page, key: str, start: str = "/ui/jobs") -> None:
    """Log in the way a person does: open a page, land on the login form, enter the key."""
    await page.goto(start)
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_load_state()
