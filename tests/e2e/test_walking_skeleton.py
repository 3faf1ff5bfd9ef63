"""One command flows HTTP -> Kafka -> worker -> PostgreSQL -> outbox -> Redis -> WebSocket, for real."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from infra.settings import Settings
from tests.e2e.support import live_session, new_sku, next_event, stock_offsets, wait_for_status
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]


async def test_command_reaches_websocket_and_read_api(
    edge: httpx.AsyncClient, live_url: str, admin_token: str
) -> None:
    sku = new_sku()
    async with live_session(live_url, admin_token) as ws:
        response = await edge.post(
            "/v1/items", json={"sku": sku.lower(), "name": "Skeleton mug", "initial_quantity": 5}
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert response.headers["location"] == f"/v1/commands/{accepted['command_id']}"
        event = await next_event(ws, lambda e: e["sku"] == sku and e["type"] == "item_registered")
        assert event["command_id"] == accepted["command_id"]
        assert event["on_hand"] == 5

        response = await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 7})
        assert response.status_code == 202, response.text
        event = await next_event(ws, lambda e: e["sku"] == sku and e["type"] == "stock_changed")
        assert (event["on_hand"], event["available"], event["version"]) == (12, 12, 2)

    item = (await edge.get(f"/v1/items/{sku}")).json()
    assert (item["on_hand"], item["reserved"], item["available"], item["version"]) == (12, 0, 12, 2)


async def test_same_command_id_twice_is_applied_once(edge: httpx.AsyncClient) -> None:
    sku = new_sku()
    registered = await edge.post("/v1/items", json={"sku": sku, "name": "Twice"})
    assert (await wait_for_status(edge, registered.json()["command_id"]))["status"] == "applied"

    client_id = str(uuid.uuid4())
    published = set()
    for _ in range(2):
        response = await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 3, "command_id": client_id})
        assert response.status_code == 202
        published.add(response.json()["command_id"])
    # Published under the id derived from the client's and the caller's: the same on the retry.
    (command_id,) = published
    assert command_id != client_id
    # A later command on the same SKU (same partition) proves the duplicate was consumed before it.
    marker = await edge.post(f"/v1/items/{sku}/adjustments", json={"delta": 1, "reason_code": "found"})
    assert (await wait_for_status(edge, marker.json()["command_id"]))["status"] == "applied"

    item = (await edge.get(f"/v1/items/{sku}")).json()
    assert item["on_hand"] == 4
    assert item["version"] == 3
    status = (await edge.get(f"/v1/commands/{command_id}")).json()
    assert status["status"] == "applied"


async def test_rejected_command_reports_its_reason(edge: httpx.AsyncClient) -> None:
    sku = new_sku()
    registered = await edge.post("/v1/items", json={"sku": sku, "name": "Few", "initial_quantity": 2})
    await wait_for_status(edge, registered.json()["command_id"])
    response = await edge.post(f"/v1/items/{sku}/adjustments", json={"delta": -3, "reason_code": "loss"})
    status = await wait_for_status(edge, response.json()["command_id"])
    assert status["status"] == "rejected"
    assert status["reason"].startswith("insufficient_stock")
    assert (await edge.get(f"/v1/items/{sku}")).json()["on_hand"] == 2


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/items", {"sku": "bad sku!", "name": "x"}),
        ("/v1/items", {"sku": "OK-1", "name": "<script>"}),
        ("/v1/items", {"sku": "OK-1"}),
        ("/v1/items/OK-1/receipts", {"quantity": 0}),
        ("/v1/items/OK-1/receipts", {"quantity": 1, "unexpected": True}),
        ("/v1/items/OK-1/adjustments", {"delta": 1, "reason_code": "because"}),
        ("/v1/items/-BAD-/receipts", {"quantity": 1}),
    ],
)
async def test_bad_input_gets_422_problem_and_publishes_nothing(
    edge: httpx.AsyncClient, stack: Settings, path: str, body: dict[str, Any]
) -> None:
    before = await stock_offsets(stack)
    response = await edge.post(path, json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["errors"]
    assert await stock_offsets(stack) == before


async def test_unknown_item_and_command(edge: httpx.AsyncClient) -> None:
    response = await edge.get(f"/v1/items/{new_sku()}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert (await edge.get(f"/v1/commands/{uuid.uuid4()}")).json()["status"] == "unknown"


async def test_every_process_serves_health_and_metrics(pipeline: dict[str, Process]) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:
        for process in pipeline.values():
            ready = await client.get(f"http://127.0.0.1:{process.port}/health/ready")
            assert ready.status_code == 200, (process.name, ready.text)
            metrics = await client.get(f"http://127.0.0.1:{process.port}/metrics")
            assert metrics.status_code == 200
            assert "process_resident_memory_bytes" in metrics.text
