"""The dashboard's Audit view in headless Chromium against the real pipeline: an admin sees the admin
actions just taken, filtered and paged; other roles are not offered the view."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from playwright.async_api import Page, expect

pytestmark = pytest.mark.stack

OpenDashboard = Callable[[str], Awaitable[Page]]


async def test_admin_sees_the_audit_trail(open_dashboard: OpenDashboard, api: httpx.AsyncClient) -> None:
    created = await api.post("/v1/admin/api-keys", json={"name": "browser-audit", "roles": ["viewer"]})
    assert created.status_code == 201, created.text
    key_id = created.json()["key_id"]
    revoked = await api.post(f"/v1/admin/api-keys/{key_id}/revoke")
    assert revoked.status_code == 200, revoked.text

    page = await open_dashboard("dash-admin")
    await page.click('#nav a[href="#/audit"]')
    await expect(page.locator("#view-audit")).to_be_visible()
    rows = page.locator("#audit tbody tr", has_text=f"apikey:{key_id}")
    await expect(rows).to_have_count(2)
    newest = rows.nth(0).locator("td")
    await expect(newest.nth(1)).to_have_text("user:dash-admin")
    await expect(newest.nth(2)).to_have_text("apikey.revoke")
    await expect(newest.nth(5)).to_have_text("127.0.0.1")
    await expect(rows.nth(1).locator("td").nth(4)).to_contain_text('"name":"browser-audit"')

    await page.fill("#audit-action", "apikey.create")
    await page.click("#audit-filter button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(page.locator("#audit tbody tr[data-action]").first).to_have_attribute(
        "data-action", "apikey.create"
    )


async def test_the_audit_view_is_for_admins_only(open_dashboard: OpenDashboard) -> None:
    page = await open_dashboard("dash-viewer")
    await expect(page.locator("#nav-audit")).to_be_hidden()
    await page.evaluate("location.hash = '#/audit'")
    await expect(page.locator("#view-items")).to_be_visible()
    await expect(page.locator("#view-audit")).to_be_hidden()
