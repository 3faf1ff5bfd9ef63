"""Headless Chromium (the Debian package, never a downloaded browser) driven by Playwright."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
FILES = ROOT / "api_edge" / "dashboard"
UNITS = Path(__file__).resolve().parent / "js"
ARTIFACTS = ROOT / "test-artifacts"
UNIT_ORIGIN = "http://dashboard.test"
TYPES = {".js": "text/javascript", ".html": "text/html", ".css": "text/css", ".json": "application/json"}


@pytest.fixture(scope="package")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():  # noqa: ASYNC240 - once per session, before any loop work
        pytest.fail(f"{CHROMIUM} is missing; ./dev installs the Debian chromium package")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        await browser.close()


@pytest.fixture
async def module_page(browser: Browser) -> AsyncIterator[Page]:
    """A page on a made-up origin whose requests are answered from the dashboard folder (and
    tests/browser/js under /tests/): the modules run in the real browser without any server."""

    async def serve(route: Route) -> None:
        name = route.request.url.removeprefix(UNIT_ORIGIN + "/").split("?")[0] or "blank.html"
        folder = UNITS if name.startswith("tests/") else FILES
        path = folder / name.removeprefix("tests/")
        if name == "blank.html":
            await route.fulfill(body="<!doctype html><title>unit</title>", content_type="text/html")
        elif path.is_file() and path.resolve().parent == folder.resolve():
            await route.fulfill(body=path.read_bytes(), content_type=TYPES.get(path.suffix, "text/plain"))
        else:
            await route.fulfill(status=404, body="not found")

    context = await browser.new_context()
    await context.route(f"{UNIT_ORIGIN}/**", serve)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{UNIT_ORIGIN}/blank.html")
    yield page
    await context.close()
    assert not errors, errors
