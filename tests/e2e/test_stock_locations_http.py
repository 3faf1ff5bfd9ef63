"""Stock by location through the HTTP edge and the whole pipeline: receive at a location, transfer, location
levels and their alert on the live feed, and the refusals a client sees."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from infra.settings import Settings
from tests.e2e.support import live_session, new_sku, next_event, wait_for_status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


async def applied(edge: httpx.AsyncClient, response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    status = await wait_for_status(edge, response.json()["command_id"])
    assert status["status"] == "applied", status
    return str(response.json()["command_id"])


@pytest.fixture
async def places(stack: Settings) -> AsyncIterator[tuple[str, str]]:
    """Two locations of their own (the locations API is helper 2's: written straight to the table here)."""
    tag = uuid.uuid4().hex[:6]
    codes = (f"WH-{tag}", f"STORE-{tag}")
    pg = await asyncpg.connect(stack.database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        for code in codes:
            await pg.execute("INSERT INTO locations (code, name, kind) VALUES ($1, $1, 'warehouse')", code)
        yield codes
    finally:
        await pg.close()


async def stock(stack: Settings, sku: str) -> dict[str, tuple[int, int]]:
    pg = await asyncpg.connect(stack.database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        rows = await pg.fetch("SELECT location, on_hand, reserved FROM item_stock WHERE sku = $1", sku)
        return {r["location"]: (r["on_hand"], r["reserved"]) for r in rows}
    finally:
        await pg.close()


async def test_transfer_through_http(
    edge: httpx.AsyncClient, live_url: str, admin_token: str, stack: Settings, places: tuple[str, str]
) -> None:
    wh, store = places
    sku = new_sku()
    body = {"sku": sku, "name": "Lamp", "initial_quantity": 12, "min_stock_level": 2, "location": wh}
    await applied(edge, await edge.post("/v1/items", json=body))
    await applied(edge, await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 3}))
    async with live_session(live_url, admin_token) as ws:
        await applied(
            edge, await edge.put(f"/v1/items/{sku}/locations/{store}/levels", json={"min_stock_level": 5})
        )
        transfer = {"from_location": wh, "to_location": store, "quantity": 4}
        moved = await applied(edge, await edge.post(f"/v1/items/{sku}/stock/transfer", json=transfer))
        event = await next_event(ws, lambda e: e["sku"] == sku and e["type"] == "stock_transferred")
        assert (event["from_location"], event["to_location"], event["quantity"]) == (wh, store, 4)
        assert event["command_id"] == moved
        arrived = await next_event(
            ws, lambda e: e["sku"] == sku and e["type"] == "stock_changed" and e["location"] == store
        )
        assert (arrived["delta"], arrived["location_on_hand"], arrived["on_hand"]) == (4, 4, 15)
        # Nothing at the store when its own minimum (5) was set: out there; 4 arrived: back, but low. The
        # item (15 in all) stays ok.
        back = await next_event(ws, lambda e: e["sku"] == sku and e["type"] == "back_in_stock")
        assert (back["location"], back["previous"], back["current"]) == (store, "out", "low")
        assert (back["available"], back["min_stock_level"]) == (4, 5)
    assert await stock(stack, sku) == {wh: (8, 0), store: (4, 0), "default": (3, 0)}
    item = (await edge.get(f"/v1/items/{sku}")).json()
    assert (item["on_hand"], item["alert_state"]) == (15, "ok")

    too_many = {"from_location": store, "to_location": wh, "quantity": 5}
    refused = await edge.post(f"/v1/items/{sku}/stock/transfer", json=too_many)
    outcome = await wait_for_status(edge, refused.json()["command_id"])
    assert outcome["status"] == "rejected"
    assert outcome["reason"].startswith("insufficient_stock")
    unknown = {"from_location": wh, "to_location": "NOWHERE-1", "quantity": 1}
    outcome = await wait_for_status(
        edge, (await edge.post(f"/v1/items/{sku}/stock/transfer", json=unknown)).json()["command_id"]
    )
    assert outcome["reason"].startswith("unknown_location")
    assert await stock(stack, sku) == {wh: (8, 0), store: (4, 0), "default": (3, 0)}


@pytest.mark.parametrize(
    "body",
    [
        {"from_location": "A", "to_location": "A", "quantity": 1},
        {"from_location": "A", "to_location": "B", "quantity": 0},
        {"from_location": "A", "to_location": "bad code", "quantity": 1},
    ],
)
async def test_a_bad_transfer_is_a_validation_problem(
    edge: httpx.AsyncClient, body: dict[str, object]
) -> None:
    response = await edge.post(f"/v1/items/{new_sku()}/stock/transfer", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
