"""Stock by location as the read API shows it, end to end: commands through the edge at two locations and a
transfer between them, then the item view, the item list's `location` filter, the ledger's and the export's,
all read back over HTTP from what the real worker wrote."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from invmon.cli import app
from tests.e2e.support import new_sku, wait_for_status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


async def applied(edge: httpx.AsyncClient, response: httpx.Response) -> None:
    assert response.status_code == 202, response.text
    status = await wait_for_status(edge, response.json()["command_id"])
    assert status["status"] == "applied", status


async def new_location(edge: httpx.AsyncClient, kind: str = "store") -> str:
    code = f"LOC-{uuid.uuid4().hex[:8].upper()}"
    response = await edge.post("/v1/locations", json={"code": code, "name": f"Place {code}", "kind": kind})
    assert response.status_code == 201, response.text
    return code


def stock(item: dict[str, Any]) -> list[tuple[str, int, int, int]]:
    return [(s["location"], s["on_hand"], s["reserved"], s["available"]) for s in item["locations"]]


async def test_item_view_list_ledger_and_export_per_location_after_a_transfer(
    edge: httpx.AsyncClient, tmp_path: Path
) -> None:
    sku, store, empty = new_sku(), await new_location(edge), await new_location(edge)
    await applied(
        edge,
        await edge.post(
            "/v1/items", json={"sku": sku, "name": "Lamp", "initial_quantity": 10, "min_stock_level": 2}
        ),
    )
    await applied(edge, await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 5, "location": store}))
    await applied(
        edge,
        await edge.post(
            f"/v1/items/{sku}/reservations",
            json={"reservation_id": "o-1", "quantity": 1, "location": store},
        ),
    )
    await applied(
        edge,
        await edge.post(
            f"/v1/items/{sku}/stock/transfer",
            json={"from_location": "default", "to_location": store, "quantity": 3},
        ),
    )

    item = (await edge.get(f"/v1/items/{sku}")).json()
    assert (item["on_hand"], item["reserved"], item["available"]) == (15, 1, 14)
    assert stock(item) == sorted([("default", 7, 0, 7), (store, 8, 1, 7)])
    assert sum(s["on_hand"] for s in item["locations"]) == item["on_hand"]
    at_store = next(s for s in item["locations"] if s["location"] == store)
    assert (at_store["min_stock_level"], at_store["own_levels"], at_store["alert_state"]) == (2, False, "ok")
    levels = await edge.put(f"/v1/items/{sku}/locations/{store}/levels", json={"min_stock_level": 8})
    await applied(edge, levels)
    item = (await edge.get(f"/v1/items/{sku}")).json()
    effective = [
        (s["location"], s["min_stock_level"], s["own_levels"], s["alert_state"]) for s in item["locations"]
    ]
    assert effective == sorted([("default", 2, False, "ok"), (store, 8, True, "low")])

    listed = (await edge.get("/v1/items", params={"location": store, "q": sku})).json()["items"]
    assert [(i["sku"], stock(i)) for i in listed] == [(sku, stock(item))]
    assert (await edge.get("/v1/items", params={"location": empty, "q": sku})).json()["items"] == []
    assert (await edge.get("/v1/items", params={"location": "-bad"})).status_code == 422

    async def ledger(**params: str) -> list[tuple[str, int, int, str]]:
        response = await edge.get(f"/v1/items/{sku}/ledger", params=params)
        assert response.status_code == 200, response.text
        return [
            (e["location"], e["delta"], e["reserved_delta"], e["reason"]) for e in response.json()["entries"]
        ]

    everything = await ledger()
    assert [row[0] for row in everything] == ["default", store, store, "default", store]
    assert await ledger(location=store) == [
        (store, 5, 0, "receive_stock"),
        (store, 0, 1, "reserve_stock"),
        (store, 3, 0, "transfer_stock"),
    ]
    assert await ledger(location="default") == [
        (r[0], r[1], r[2], r[3]) for r in everything if r[0] == "default"
    ]
    assert await ledger(location=empty) == []

    exported = await edge.get("/v1/exports/ledger", params={"sku": sku, "location": store, "format": "csv"})
    assert exported.status_code == 200, exported.text
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["location"], r["delta"], r["reason"]) for r in rows] == [
        (store, "5", "receive_stock"),
        (store, "0", "reserve_stock"),
        (store, "3", "transfer_stock"),
    ]
    refused = await edge.get("/v1/exports/price-history", params={"location": store})
    assert refused.status_code == 422, refused.text

    out = tmp_path / "ledger.csv"
    args = ["export", "ledger", "--sku", sku, "--location", store, "--output", str(out)]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == exported.content  # the same bytes as the edge's
    args = ["export", "price-history", "--location", store, "--output", str(tmp_path / "prices.csv")]
    assert (await asyncio.to_thread(CliRunner().invoke, app, args)).exit_code == 2
