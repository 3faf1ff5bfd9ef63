"""Headless Chromium (the Debian package, never a downloaded browser) driven by Playwright."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Response,
    Route,
    async_playwright,
    expect,
)
from typer.testing import CliRunner

from infra.settings import Settings
from invmon.cli import app as cli
from tests.processes import Process, running

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


# --- the dashboard against the real pipeline ----------------------------------------------------------

PASSWORD = "dash-browser-password-0123"
USERS = {"dash-admin": "admin", "dash-viewer": "viewer", "dash-pricing": "pricing"}
NOISE = ("WebSocket connection to",)  # Chromium logs each refused reconnect while the relay is down


@dataclass
class Dashboard:
    """The running pipeline the browser tests drive: processes, URLs and an admin API client."""

    processes: dict[str, Process]
    settings: Settings
    log_dir: Path
    env: dict[str, str]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.settings.edge_port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/dashboard/"


@pytest.fixture(scope="package")
def dashboard(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """Every Procfile process, the live relay included. The relay admits the edge's origin and the edge
    tells the page where the relay is: both through settings, as an operator would configure them."""
    log_dir: Path = tmp_path_factory.mktemp("dashboard-logs")
    edge_origin = f"http://127.0.0.1:{stack.edge_port}"
    env = {
        "INVMON_CORS_ORIGINS": json.dumps([edge_origin]),
        "INVMON_LIVE_PUBLIC_URL": f"ws://127.0.0.1:{stack.live_port}/v1/live",
        # Every test logs the same users in again: more than the per-account login limit a minute.
        "INVMON_RATE_LIMIT_LOGIN_ACCOUNT": "1000000/minute",
    }
    ports = {
        "edge": stack.edge_port,
        "stock_worker": stack.stock_worker_port,
        "outbox_relay": stack.outbox_relay_port,
        "price_worker": stack.price_worker_port,
        "live_relay": stack.live_port,
    }
    for name, role in USERS.items():
        result = CliRunner().invoke(
            cli, ["user", "add", name, "--role", role, "--password-stdin"], input=PASSWORD + "\n"
        )
        assert result.exit_code == 0, result.output
    with running(ports, log_dir, env) as processes:
        yield Dashboard(processes, stack, log_dir, env)


@pytest.fixture
async def api(dashboard: Dashboard) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API as the admin user: what an upstream tool or a colleague would post."""
    async with httpx.AsyncClient(base_url=dashboard.origin, timeout=10.0) as client:
        response = await client.post("/v1/auth/token", data={"username": "dash-admin", "password": PASSWORD})
        assert response.status_code == 200, response.text
        client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
        yield client


@pytest.fixture
async def open_dashboard(
    browser: Browser, dashboard: Dashboard
) -> AsyncIterator[Callable[[str], Awaitable[Page]]]:
    """Opens the dashboard in a fresh laptop-sized window and logs in through the form. Any page error
    or console error (a CSP violation is one) fails the test."""
    contexts: list[BrowserContext] = []
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(NOISE):
            problems.append(message.text)

    def on_response(response: Response) -> None:
        # The console names no URL for a failed load; the response does.
        if response.status >= 400:
            problems.append(f"{response.status} {response.request.method} {response.url}")

    async def open_as(user: str) -> Page:
        context = await browser.new_context(viewport={"width": 1366, "height": 768})
        contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("console", on_console)
        page.on("response", on_response)
        await page.goto(dashboard.url)
        await page.fill("input[name=username]", user)
        await page.fill("input[name=password]", PASSWORD)
        await page.click("#login button[type=submit]")
        await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15000)
        return page

    yield open_as
    for context in contexts:
        await context.close()
    assert not problems, problems
