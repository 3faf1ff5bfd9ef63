"""The overview strip, the admins' operations page and the item page's stock chart in headless Chromium,
against the real pipeline with traffic from `invmon simulate`. Screenshots for the closing note go to
test-artifacts/."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import Page, expect

from contracts.topics import STOCK_COMMANDS
from invmon.simulate import Summary, simulate, sku_name
from tests.browser.conftest import ARTIFACTS, Dashboard
from tests.e2e.support import new_sku

pytestmark = pytest.mark.stack

OpenDashboard = Callable[[str], Awaitable[Page]]


async def test_stock_chart_draws_on_hand_and_available_from_the_ledger(module_page: Page) -> None:
    result = await module_page.evaluate(
        """async () => {
          const { stockChart } = await import("/chart.js");
          const entries = [
            { created_at: "2026-12-01T10:00:00Z", on_hand_after: 10, reserved_after: 0 },
            { created_at: "2026-12-01T11:00:00Z", on_hand_after: 10, reserved_after: 4 },
            { created_at: "2026-12-01T12:00:00Z", on_hand_after: 30, reserved_after: 4 },
          ];
          const svg = stockChart(entries, 800, Date.parse("2026-12-01T13:00:00Z"));
          const lines = [...svg.querySelectorAll("polyline")];
          return {
            series: lines.map((l) => l.dataset.series),
            points: lines.map((l) =>
              l.getAttribute("points").split(" ").map((p) => p.split(",").map(Number))),
            texts: [...svg.querySelectorAll("text")].map((t) => t.textContent),
            empty: stockChart([], 800).textContent,
          };
        }"""
    )
    assert result["series"] == ["on hand", "available"]
    assert {"30", "6", "on hand", "available"} <= set(result["texts"]), "axis from 6 to 30, a legend"
    on_hand, available = ([y for _, y in line] for line in result["points"])
    # A step line: each value holds until the next entry, the last one until now.
    assert len(on_hand) == len(available) == 2 * 3
    assert on_hand[0] == available[0], "nothing reserved yet: available = on hand"
    assert available[2] > on_hand[2], "4 reserved: available (6) is drawn below on hand (10)"
    assert min(on_hand) == on_hand[-1], "30 is the highest value, drawn at the top"
    assert result["empty"] == "No stock movements"


async def simulated_traffic(api: httpx.AsyncClient, dashboard: Dashboard) -> Summary:
    """A few seconds of `invmon simulate` through the pipeline's edge, with an API key an admin made."""
    created = await api.post(
        "/v1/admin/api-keys", json={"name": "browser-simulate", "roles": ["operator", "pricing"]}
    )
    assert created.status_code == 201, created.text
    summary = await simulate(
        dashboard.settings,
        base_url=dashboard.origin,
        api_key=created.json()["key"],
        rate=20,
        duration_s=5,
        skus=4,
        bad_per_mille=40,
        seed=7,
    )
    assert summary.accepted > 50, summary.as_dict()
    return summary


async def bad_record(dashboard: Dashboard) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=dashboard.settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(STOCK_COMMANDS.name, b"{not json", key=new_sku().encode())
    finally:
        await producer.stop()


async def operations(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/v1/admin/operations")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_strip_the_operations_page_and_the_stock_chart_with_traffic(
    open_dashboard: OpenDashboard, api: httpx.AsyncClient, dashboard: Dashboard
) -> None:
    await simulated_traffic(api, dashboard)

    page = await open_dashboard("dash-admin")
    # The strip: per-state counts as the API has them, and a sparkline that shows the traffic.
    spark = page.locator("#overview-spark")
    await expect(spark.locator("svg polyline")).to_have_count(1)
    await expect(spark).not_to_have_attribute("data-peak", "0", timeout=20000)  # the bucket becomes whole
    states = (await api.get("/v1/overview")).json()["items_by_alert_state"]
    for state, count in states.items():
        await expect(page.locator(f'#overview-states .stat[data-state="{state}"] b')).to_have_text(str(count))
    await page.screenshot(path=str(ARTIFACTS / "dashboard-items-strip.png"))

    # The operations page: lag per group and partition, dead letters by reason, refreshed on its own.
    await page.click('#nav a[href="#/operations"]')
    await expect(page.locator("#view-operations")).to_be_visible()
    stock_group = dashboard.settings.stock_consumer_group
    await expect(page.locator(f'#ops-lag tr[data-group="{stock_group}"]').first).to_be_visible()
    await expect(page.locator('#ops-outbox dd[data-fact="unpublished"]')).to_have_text(
        str((await operations(api))["outbox"]["unpublished"]), timeout=10000
    )
    before = (await operations(api))["dead_letters_by_reason"]["invalid"]
    invalid = page.locator('#ops-dlq tr[data-reason="invalid"] td.num')
    await expect(invalid).to_have_text(str(before), timeout=10000)
    await page.screenshot(path=str(ARTIFACTS / "dashboard-operations.png"), full_page=True)
    await bad_record(dashboard)
    await expect(page.locator('#ops-dlq tr[data-reason="undecodable"]')).to_have_count(1, timeout=20000)

    # The item page: stock over time beside the price history.
    await page.goto(f"{dashboard.url}#/items/{sku_name(0)}")
    await expect(page.locator("#view-item")).to_be_visible()
    await expect(page.locator("#stock-chart svg polyline")).to_have_count(2)
    await expect(page.locator("#item-chart svg polyline")).to_have_count(1)
    ledger = (await api.get(f"/v1/items/{sku_name(0)}/ledger", params={"limit": 1000})).json()["entries"]
    await expect(page.locator("#ledger tbody tr")).to_have_count(len(ledger))
    await page.screenshot(path=str(ARTIFACTS / "dashboard-item-charts.png"), full_page=True)


async def test_the_operations_page_is_for_admins_only(open_dashboard: OpenDashboard) -> None:
    page = await open_dashboard("dash-viewer")
    await expect(page.locator("#overview-states .stat")).to_have_count(4)  # viewers see the strip
    await expect(page.locator("#nav-operations")).to_be_hidden()
    await page.evaluate("location.hash = '#/operations'")
    await expect(page.locator("#view-items")).to_be_visible()
    await expect(page.locator("#view-operations")).to_be_hidden()
