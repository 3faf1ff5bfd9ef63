"""Every stock command through the HTTP edge, with alerts on the live feed and the ledger read back."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.e2e.support import live_session, new_sku, next_event, wait_for_status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


async def applied(edge: httpx.AsyncClient, response: httpx.Response) -> None:
    assert response.status_code == 202, response.text
    status = await wait_for_status(edge, response.json()["command_id"])
    assert status["status"] == "applied", status


async def test_reservation_lifecycle_alerts_and_ledger(
    edge: httpx.AsyncClient, live_url: str, admin_token: str
) -> None:
    sku = new_sku()
    async with live_session(live_url, admin_token) as ws:
        await applied(
            edge, await edge.post("/v1/items", json={"sku": sku, "name": "Lamp", "min_stock_level": 3})
        )
        # Registered with nothing on hand: out of stock from the start, announced as a transition from "ok".
        assert (await edge.get(f"/v1/items/{sku}")).json()["alert_state"] == "out"
        out = await next_event(ws, lambda e: e["sku"] == sku and e["type"] == "out_of_stock")
        assert (out["previous"], out["current"], out["available"]) == ("ok", "out", 0)
        assert out["min_stock_level"] == 3

        await applied(edge, await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 10}))
        back = await next_event(ws, lambda e: e["sku"] == sku and e["type"] == "back_in_stock")
        assert (back["previous"], back["current"], back["available"]) == ("out", "ok", 10)

        await applied(
            edge,
            await edge.post(f"/v1/items/{sku}/reservations", json={"reservation_id": "o-1", "quantity": 8}),
        )
        low = await next_event(ws, lambda e: e["sku"] == sku and e["type"] == "low_stock_detected")
        assert low["available"] == 2

    rejected = await edge.post(f"/v1/items/{sku}/reservations", json={"reservation_id": "o-2", "quantity": 3})
    status = await wait_for_status(edge, rejected.json()["command_id"])
    assert status["status"] == "rejected"
    assert status["reason"].startswith("insufficient_stock")

    await applied(edge, await edge.post(f"/v1/items/{sku}/reservations/o-1/fulfil"))
    await applied(edge, await edge.post(f"/v1/items/{sku}/counts", json={"counted_quantity": 1}))
    await applied(edge, await edge.patch(f"/v1/items/{sku}", json={"min_stock_level": 0, "category": None}))
    await applied(edge, await edge.post(f"/v1/items/{sku}/deactivate", json={"reason": "end of line"}))
    inactive = await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 1})
    assert (await wait_for_status(edge, inactive.json()["command_id"]))["reason"].startswith("inactive_item")

    item = (await edge.get(f"/v1/items/{sku}")).json()
    assert (item["on_hand"], item["reserved"], item["available"], item["is_active"]) == (1, 0, 1, False)
    assert item["min_stock_level"] == 0

    ledger = (await edge.get(f"/v1/items/{sku}/ledger", params={"limit": 2})).json()
    entries = ledger["entries"]
    while ledger["next_after"] is not None:
        ledger = (await edge.get(f"/v1/items/{sku}/ledger", params={"after": ledger["next_after"]})).json()
        entries += ledger["entries"]
    assert [e["reason"] for e in entries] == [
        "receive_stock",
        "reserve_stock",
        "fulfil_reservation",
        "count_stock",
    ]
    assert sum(e["delta"] for e in entries) == item["on_hand"]
    assert sum(e["reserved_delta"] for e in entries) == item["reserved"]


async def test_release_of_unknown_reservation_is_rejected(edge: httpx.AsyncClient) -> None:
    sku = new_sku()
    await applied(edge, await edge.post("/v1/items", json={"sku": sku, "name": "Cup", "initial_quantity": 1}))
    response = await edge.post(
        f"/v1/items/{sku}/reservations/nope/release", json={"command_id": str(uuid.uuid4())}
    )
    status = await wait_for_status(edge, response.json()["command_id"])
    assert (status["status"], status["reason"].split(":")[0]) == ("rejected", "unknown_reservation")


async def test_openapi_lists_every_stock_command(edge: httpx.AsyncClient) -> None:
    spec = (await edge.get("/openapi.json")).json()
    paths = set(spec["paths"])
    for path in (
        "/v1/items",
        "/v1/items/{sku}",
        "/v1/items/{sku}/receipts",
        "/v1/items/{sku}/adjustments",
        "/v1/items/{sku}/counts",
        "/v1/items/{sku}/reservations",
        "/v1/items/{sku}/reservations/{reservation_id}/release",
        "/v1/items/{sku}/reservations/{reservation_id}/fulfil",
        "/v1/items/{sku}/deactivate",
        "/v1/items/{sku}/reactivate",
        "/v1/items/{sku}/ledger",
    ):
        assert path in paths, path
    assert json.dumps(spec).count('"examples"') >= 8


async def test_item_list_filters_pages_and_alerts(edge: httpx.AsyncClient) -> None:
    category = f"cat-{uuid.uuid4().hex[:8]}"
    skus = sorted(new_sku() for _ in range(5))
    for i, sku in enumerate(skus):
        body = {
            "sku": sku,
            "name": f"Listed {i}",
            "category": category,
            "initial_quantity": i,
            "min_stock_level": 2,
        }
        await applied(edge, await edge.post("/v1/items", json=body))
    page = (await edge.get("/v1/items", params={"category": category, "limit": 2})).json()
    seen = [i["sku"] for i in page["items"]]
    while page["next_after"]:
        params = {"category": category, "limit": 2, "after": page["next_after"]}
        page = (await edge.get("/v1/items", params=params)).json()
        seen += [i["sku"] for i in page["items"]]
    assert seen == skus
    low = (await edge.get("/v1/items", params={"category": category, "alert_state": "low"})).json()["items"]
    assert [i["on_hand"] for i in low] == [1, 2]
    found = (await edge.get("/v1/items", params={"q": skus[3].lower()})).json()["items"]
    assert [i["sku"] for i in found] == [skus[3]]
    alerts = (await edge.get("/v1/alerts", params={"limit": 1000})).json()
    states = {a["sku"]: a["state"] for a in alerts if a["kind"] == "stock"}
    assert [states.get(s) for s in skus] == ["out", "low", "low", None, None]


@pytest.mark.parametrize(
    ("path", "cursor", "ok"),
    [
        ("/v1/items/{sku}/ledger", "after", 200),
        ("/v1/items/{sku}/prices/EUR/history", "after", 200),
        (f"/v1/notifications/subscriptions/{uuid.uuid4()}/deliveries", "before_id", 404),
    ],
)
async def test_a_row_cursor_beyond_bigint_is_a_422_not_a_500(
    edge: httpx.AsyncClient, path: str, cursor: str, ok: int
) -> None:
    """Found by schemathesis: `after=11752218632645265850368` reached PostgreSQL and failed the query."""
    url = path.format(sku=new_sku())
    assert (await edge.get(url, params={cursor: 2**63 - 1})).status_code == ok
    refused = await edge.get(url, params={cursor: 2**63})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("param", ["category", "q", "after"])
async def test_item_list_text_with_a_nul_is_a_422_not_a_500(edge: httpx.AsyncClient, param: str) -> None:
    """Found by schemathesis: PostgreSQL text cannot hold NUL, and the query failed. These parameters are
    one line, like the names and categories they match: a tab or line break is refused too."""
    assert (await edge.get("/v1/items", params={param: "a b"})).status_code == 200
    for text in ("V\x00w", "a\tb", "a\r\nb"):
        refused = await edge.get("/v1/items", params={param: text})
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
