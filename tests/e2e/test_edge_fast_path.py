"""The plain-ASGI command path (api_edge.fast_intake) against the real edge and broker: for every command
route it publishes the same command and answers the same way as the FastAPI endpoint, which keeps every
request it does not answer, so errors still come from FastAPI. Which path answered is read from the
edge's own counter."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api_edge.app import FAST_ROUTES
from api_edge.commands import stock
from api_edge.intake import CommandRoute
from api_edge.price_commands import prices
from infra.settings import Settings
from tests.e2e.support import new_sku, published, stock_offsets
from tests.integration.helpers import wait_until
from tests.processes import Process

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

ROUTES = [*stock.routes, *prices.routes]
RESERVATION = "order-77"
CHANGE = str(uuid.uuid4())
# A valid body per route (the fast path answers only a non-empty JSON body).
BODIES: dict[str, dict[str, Any]] = {
    "/v1/items": {"name": "Fast mug", "min_stock_level": 2},
    "/v1/items/{sku}": {"min_stock_level": 8, "cost_price": "2.40"},
    "/v1/items/{sku}/deactivate": {"reason": "discontinued"},
    "/v1/items/{sku}/reactivate": {"reason": "back"},
    "/v1/items/{sku}/receipts": {"quantity": 24},
    "/v1/items/{sku}/adjustments": {"delta": -2, "reason_code": "damage"},
    "/v1/items/{sku}/counts": {"counted_quantity": 31},
    "/v1/items/{sku}/reservations": {"reservation_id": RESERVATION, "quantity": 2},
    "/v1/items/{sku}/reservations/{reservation_id}/release": {"expected_version": 3},
    "/v1/items/{sku}/reservations/{reservation_id}/fulfil": {"expected_version": 3},
    "/v1/items/{sku}/stock/transfer": {"from_location": "default", "to_location": "WH-FAST", "quantity": 2},
    "/v1/items/{sku}/locations/{location}/levels": {"min_stock_level": 1, "max_stock_level": None},
    "/v1/items/{sku}/prices": {"currency": "EUR", "selling_price": "12.90", "reason": "supplier"},
    "/v1/items/{sku}/price-changes/{change_id}/approve": {"comment": "fine"},
    "/v1/items/{sku}/price-changes/{change_id}/reject": {"comment": "too much"},
    "/v1/items/{sku}/price-windows/{change_id}/cancel": {"comment": "campaign over"},
}


def test_every_command_route_has_a_case() -> None:
    assert sorted(BODIES) == sorted(route.path for route in ROUTES)


async def routed(edge: httpx.AsyncClient) -> dict[str, float]:
    text = (await edge.get("/metrics")).text
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "invmon_edge_fast_intake"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


async def send(edge: httpx.AsyncClient, route: CommandRoute, sku: str, query: str = "") -> httpx.Response:
    path = route.path.format(sku=sku, reservation_id=RESERVATION, change_id=CHANGE, location="WH-FAST")
    body = {**BODIES[route.path], **({"sku": sku} if route.sku is None else {})}
    return await edge.request(route.method, path + query, json=body)


def comparable(command: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in command.items() if k not in ("command_id", "issued_at", "sku")}


@pytest.mark.parametrize("route", ROUTES, ids=[f"{r.method} {r.path}" for r in ROUTES])
async def test_both_paths_publish_the_same_command(
    edge: httpx.AsyncClient, stack: Settings, route: CommandRoute
) -> None:
    fast_sku, slow_sku = new_sku(), new_sku()
    since = await stock_offsets(stack, route.topic)
    before = await routed(edge)
    fast = await send(edge, route, fast_sku)
    middle = await routed(edge)
    slow = await send(edge, route, slow_sku, "?wait=0")  # a query string: FastAPI's endpoint answers
    after = await routed(edge)

    # Price decisions never take the fast path (FastAPI's endpoint records them in the audit trail), so
    # neither of its counters moves for them.
    fast_path = route in FAST_ROUTES
    assert middle.get("answered", 0) - before.get("answered", 0) == int(fast_path)
    assert middle.get("handed_over", 0) == before.get("handed_over", 0)
    assert after.get("handed_over", 0) - middle.get("handed_over", 0) == int(fast_path)
    for response in (fast, slow):
        assert response.status_code == 202, response.text
        assert response.headers["content-type"] == "application/json"
        answer = response.json()
        assert answer == {
            "command_id": answer["command_id"],
            "status": "accepted",
            "reason": None,
            "status_url": f"/v1/commands/{answer['command_id']}",
        }
        assert response.headers["location"] == answer["status_url"]
        assert "ratelimit-remaining" in response.headers
    [fast_record] = await published(stack, fast_sku, since)
    [slow_record] = await published(stack, slow_sku, since)
    assert fast_record["command_id"] == fast.json()["command_id"]
    assert fast_record["type"] == route.kind.model_fields["type"].default
    assert comparable(fast_record) == comparable(slow_record)


async def test_requests_it_does_not_answer_get_fastapis_answers(edge: httpx.AsyncClient) -> None:
    sku = new_sku()
    before = await routed(edge)
    invalid = await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": "many"})
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    assert invalid.json()["errors"][0]["loc"] == ["body", "quantity"]
    empty = await edge.post(f"/v1/items/{sku}/deactivate")  # an empty body: the default reason
    assert empty.status_code == 202, empty.text
    unauthenticated = await edge.post(
        f"/v1/items/{sku}/receipts", json={"quantity": 1}, headers={"Authorization": "Bearer nope"}
    )
    assert unauthenticated.status_code == 401
    not_json = await edge.post(
        f"/v1/items/{sku}/receipts", content=b'{"quantity": 1}', headers={"Content-Type": "text/plain"}
    )
    assert not_json.status_code == 422
    after = await routed(edge)
    assert after.get("handed_over", 0) - before.get("handed_over", 0) == 4
    assert after.get("answered", 0) == before.get("answered", 0)


async def test_the_access_line_names_the_command_and_hides_the_token(
    edge: httpx.AsyncClient, pipeline: dict[str, Process], admin_token: str
) -> None:
    """One JSON access line per request, written by the metrics middleware for both paths."""
    sku = new_sku()
    fast = (await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 1})).json()["command_id"]
    slow = (await edge.post(f"/v1/items/{sku}/receipts?wait=0", json={"quantity": 1})).json()["command_id"]

    async def access_lines() -> dict[str, dict[str, Any]]:
        lines = [
            json.loads(line) for line in pipeline["edge"].log.read_text().splitlines() if line[:1] == "{"
        ]
        return {e["command_id"]: e for e in lines if e.get("event") == "http_request" and e.get("command_id")}

    found = await wait_until(access_lines, lambda lines: {fast, slow} <= set(lines), within=10, what="lines")
    assert found[fast]["path"] == f"/v1/items/{sku}/receipts"
    assert found[slow]["path"] == f"/v1/items/{sku}/receipts?wait=0"
    for line in (found[fast], found[slow]):
        assert (line["status"], line["method"], line["logger"], line["level"]) == (
            202,
            "POST",
            "invmon.edge.access",
            "info",
        )
        assert line["timestamp"].endswith("Z")
        assert line["ms"] >= 0
    assert admin_token not in pipeline["edge"].log.read_text()
