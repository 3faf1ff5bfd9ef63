"""Stock by location in the dashboard (issue 19), headless Chromium against the real pipeline: the items
table's Locations column and location filter, and the item page's stock per location following transfers
live, with the location's own alert badge."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import ARTIFACTS
from tests.browser.test_dashboard import cell, post, register
from tests.e2e.support import new_sku

pytestmark = pytest.mark.stack

OpenDashboard = Callable[[str], Awaitable[Page]]


def stock_at(page: Page, location: str, column: str) -> Any:
    return page.locator(f'#item-locations tr[data-location="{location}"] td[data-col="{column}"]')


async def test_locations_column_filter_and_item_page_follow_transfers(
    open_dashboard: OpenDashboard, api: httpx.AsyncClient
) -> None:
    store = f"ST-{uuid.uuid4().hex[:8]}"
    created = await api.post("/v1/locations", json={"code": store, "name": "Paris store", "kind": "store"})
    assert created.status_code == 201, created.text
    sku, elsewhere = new_sku(), new_sku()
    await register(api, sku, quantity=10, min_level=3)
    await register(api, elsewhere, quantity=5, min_level=1)

    page = await open_dashboard("dash-viewer")
    await expect(cell(page, sku, "locations")).to_have_text("default 10")
    # The filter lists the locations the API knows, the new one included.
    await expect(page.locator(f'#filter-location option[value="{store}"]')).to_have_count(1)

    transfer = f"/v1/items/{sku}/stock/transfer"
    await post(api, transfer, {"from_location": "default", "to_location": store, "quantity": 4}, wait=10)
    await expect(cell(page, sku, "locations")).to_have_text(f"{store} 4 · default 6", timeout=5000)
    await expect(cell(page, sku, "on_hand")).to_have_text("10")  # a transfer leaves the total as it was

    await page.select_option("#filter-location", store)
    await expect(page.locator("#items tbody tr")).to_have_count(1)
    await expect(cell(page, sku, "locations")).to_have_text(f"{store} 4")
    await expect(cell(page, elsewhere, "locations")).to_have_count(0)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-locations.png"))
    await page.select_option("#filter-location", "")
    await expect(cell(page, elsewhere, "locations")).to_have_text("default 5")

    await page.click(f'#items tr[data-sku="{sku}"] a')
    await expect(stock_at(page, store, "available")).to_have_text("4")
    await expect(stock_at(page, "default", "on_hand")).to_have_text("6")
    await expect(stock_at(page, "default", "levels")).to_have_text("3 / —")

    # Back to the store: 2 of its 4 go to default, leaving 2 there, under the item's minimum of 3.
    back = {"from_location": store, "to_location": "default", "quantity": 2}
    await post(api, transfer, back, wait=10)
    await expect(stock_at(page, store, "available")).to_have_text("2", timeout=5000)
    await expect(stock_at(page, "default", "available")).to_have_text("8")
    await expect(stock_at(page, store, "alert_state").locator(".badge")).to_have_attribute(
        "data-state", "low", timeout=5000
    )
    await expect(stock_at(page, "default", "alert_state").locator(".badge")).to_have_attribute(
        "data-state", "ok"
    )
    await expect(page.locator("#item-title .badge")).to_have_attribute("data-state", "ok")
    item = (await api.get(f"/v1/items/{sku}")).json()
    shown = await page.locator("#item-locations tbody tr").evaluate_all(
        "rows => rows.map((r) => r.dataset.location)"
    )
    assert shown == [loc["location"] for loc in item["locations"]], "the API's order"
    await page.screenshot(path=str(ARTIFACTS / "dashboard-item-locations.png"), full_page=True)
