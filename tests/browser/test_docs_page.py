"""/docs in a real browser with every other origin unreachable: Swagger UI renders the API under the
page's CSP."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, ConsoleMessage, Route, expect

from tests.browser.conftest import Dashboard

pytestmark = pytest.mark.stack


async def test_swagger_ui_renders_offline_under_its_csp(browser: Browser, dashboard: Dashboard) -> None:
    context = await browser.new_context()
    elsewhere: list[str] = []
    problems: list[str] = []

    async def offline(route: Route) -> None:
        if route.request.url.startswith(dashboard.origin + "/"):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":  # a CSP violation is one
            problems.append(message.text)

    await context.route("**/*", offline)
    page = await context.new_page()
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", on_console)
    try:
        await page.goto(f"{dashboard.origin}/docs")
        await expect(page.locator(".opblock").first).to_be_visible(timeout=15000)
        assert await page.locator(".opblock").count() > 20
        await expect(page.locator(".title")).to_contain_text("inventory-monitor edge")
    finally:
        await context.close()
    assert not elsewhere, elsewhere
    assert not problems, problems
