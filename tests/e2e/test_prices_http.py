"""Prices through the HTTP edge and the price worker, against the real stack."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.support import new_sku, user_token, wait_for_status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


async def applied(edge: httpx.AsyncClient, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    status = await wait_for_status(edge, response.json()["command_id"])
    assert status["status"] == "applied", status
    return status


APPROVER = "e2e-approver"
APPROVER_PASSWORD = "e2e-approver-password-0123"


@contextlib.asynccontextmanager
async def approver_client(edge: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A second person with the pricing role: price approvals need four eyes."""
    port = edge.base_url.port
    assert port is not None
    token = await asyncio.to_thread(user_token, port, APPROVER, "pricing", APPROVER_PASSWORD)
    async with httpx.AsyncClient(
        base_url=str(edge.base_url),
        timeout=10.0,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


async def registered(edge: httpx.AsyncClient) -> str:
    sku = new_sku()
    await applied(edge, await edge.post("/v1/items", json={"sku": sku, "name": "Priced"}))
    return sku


async def eur(edge: httpx.AsyncClient, sku: str) -> dict[str, Any]:
    prices = (await edge.get(f"/v1/items/{sku}/prices")).json()["prices"]
    return next(p for p in prices if p["currency"] == "EUR")


async def test_price_margin_and_history(edge: httpx.AsyncClient) -> None:
    sku = await registered(edge)
    await applied(
        edge,
        await edge.post(
            f"/v1/items/{sku}/prices", json={"currency": "eur", "selling_price": "10.005", "cost_price": "6"}
        ),
    )
    await applied(
        edge, await edge.post(f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "11.00"})
    )
    price = await eur(edge, sku)
    assert price["effective_price"] == "11.0000"
    assert Decimal(price["margin_pct"]) == Decimal("45.45")
    assert Decimal(price["markup_pct"]) == Decimal("83.33")
    history = (await edge.get(f"/v1/items/{sku}/prices/EUR/history")).json()["entries"]
    assert [(h["old_price"], h["new_price"]) for h in history] == [(None, "10.0100"), ("10.0100", "11.0000")]
    assert Decimal(history[1]["change_pct"]) == Decimal("9.89")


async def test_large_change_waits_for_approval_then_history_shows_both(edge: httpx.AsyncClient) -> None:
    sku = await registered(edge)
    await applied(
        edge,
        await edge.post(
            f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "10", "cost_price": "5"}
        ),
    )
    held = await applied(
        edge, await edge.post(f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "20"})
    )
    assert (await eur(edge, sku))["effective_price"] == "10.0000"
    pending = (await edge.get("/v1/price-changes", params={"status": "pending", "limit": 500})).json()
    change = next(p for p in pending if p["change_id"] == held["command_id"])
    assert "moves" in change["why"]

    approve = f"/v1/items/{sku}/price-changes/{held['command_id']}/approve"
    own = await edge.post(approve, json={"comment": "mine"})
    assert own.status_code == 202, own.text
    refused = await wait_for_status(edge, own.json()["command_id"])
    assert (refused["status"], refused["reason"].split(":")[0]) == ("rejected", "self_approval"), refused
    assert (await eur(edge, sku))["effective_price"] == "10.0000"

    async with approver_client(edge) as approver:
        await applied(approver, await approver.post(approve, json={"comment": "ok"}))
    assert (await eur(edge, sku))["effective_price"] == "20.0000"
    last = (await edge.get(f"/v1/items/{sku}/prices/EUR/history")).json()["entries"][-1]
    assert (last["change_type"], last["requested_by"], last["approved_by"]) == (
        "approval",
        "user:e2e-admin",
        f"user:{APPROVER}",
    )
    again = await edge.post(f"/v1/items/{sku}/price-changes/{held['command_id']}/approve")
    status = await wait_for_status(edge, again.json()["command_id"])
    assert status["reason"].startswith("change_closed")


async def test_scheduled_window_activates_expires_and_overlap_is_refused(edge: httpx.AsyncClient) -> None:
    sku = await registered(edge)
    await applied(
        edge, await edge.post(f"/v1/items/{sku}/prices", json={"currency": "EUR", "selling_price": "10"})
    )
    start = datetime.now(UTC) + timedelta(seconds=2)
    window = {"currency": "EUR", "selling_price": "9", "effective_from": start.isoformat(),
              "effective_until": (start + timedelta(seconds=2)).isoformat()}  # fmt: skip
    await applied(edge, await edge.post(f"/v1/items/{sku}/prices", json=window))
    overlapping = {
        **window,
        "selling_price": "8.5",
        "effective_from": (start + timedelta(seconds=1)).isoformat(),
    }
    refused = await edge.post(f"/v1/items/{sku}/prices", json=overlapping)
    status = await wait_for_status(edge, refused.json()["command_id"])
    assert status["reason"].startswith("window_overlap")

    async def effective(value: str) -> datetime:
        while (await eur(edge, sku))["effective_price"] != value:  # noqa: ASYNC110  # polls over HTTP
            await asyncio.sleep(0.05)  # poll interval while waiting for a condition
        return datetime.now(UTC)

    activated = await asyncio.wait_for(effective("9.0000"), 10)
    assert (activated - start).total_seconds() < 1.0
    await asyncio.wait_for(effective("10.0000"), 10)
    types = [
        h["change_type"] for h in (await edge.get(f"/v1/items/{sku}/prices/EUR/history")).json()["entries"]
    ]
    assert types == ["manual", "scheduled", "scheduled"]


async def test_bad_prices_are_refused_at_the_edge(edge: httpx.AsyncClient) -> None:
    for body in (
        {"currency": "EUR", "selling_price": "-1"},
        {"currency": "XXX", "selling_price": "1"},
        {"currency": "EUR", "selling_price": "1", "discount_price": "2"},
        {"currency": "EUR", "selling_price": 1.5},
    ):
        response = await edge.post("/v1/items/ANY-1/prices", json=body)
        assert response.status_code == 422, body
