"""Hostile values from the outside: every router answers 422 (or its own refusal), never a 500, for a
lone surrogate in a free-text field, a line break in a one-line field, an instant PostgreSQL cannot hold,
and numbers outside the documented formats."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.e2e.support import new_sku

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

SURROGATE = "\\ud800"  # as the JSON escape a client sends; json.loads makes it a lone surrogate
HUGE = "9999-12-31T23:59:59.999999-23:59"  # valid ISO 8601, but the year 10000 in UTC
CHANGE_ID = "9b2e4c1a-7d3f-4a6b-8c5d-1e2f3a4b5c6d"
WEBHOOK = {"kind": "webhook", "url": "https://hooks.example.com/invmon"}


def raw_json(body: dict[str, Any], field: str, escaped: str) -> bytes:
    """`body` with `field` set to a string written as raw JSON (escapes kept as they are)."""
    text = json.dumps({**body, field: "@@"})
    return text.replace('"@@"', f'"{escaped}"').encode()


async def post_raw(
    edge: httpx.AsyncClient, path: str, content: bytes, method: str = "POST"
) -> httpx.Response:
    return await edge.request(method, path, content=content, headers={"Content-Type": "application/json"})


def assert_validation(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    # A lone surrogate escape is refused while the JSON is parsed, before any field is read.
    assert field in response.text or "surrogate must be paired" in response.text, response.text


# (method, path, valid body, free-text fields) per router that takes text.
TEXT_ROUTES: list[tuple[str, str, dict[str, Any], list[str]]] = [
    (
        "POST",
        "/v1/items",
        {"sku": "{sku}", "name": "Mug"},
        ["name", "description", "category", "dimensions"],
    ),
    ("PATCH", "/v1/items/{sku}", {"min_stock_level": 1}, ["name", "description", "category", "dimensions"]),
    ("POST", "/v1/items/{sku}/deactivate", {}, ["reason"]),
    ("POST", "/v1/items/{sku}/adjustments", {"delta": 1, "reason_code": "found"}, ["note"]),
    ("POST", "/v1/items/{sku}/counts", {"counted_quantity": 1}, ["note"]),
    ("POST", "/v1/items/{sku}/prices", {"currency": "EUR", "selling_price": "1.00"}, ["reason", "notes"]),
    ("POST", f"/v1/items/{{sku}}/price-changes/{CHANGE_ID}/reject", {}, ["comment"]),
    ("POST", "/v1/notifications/subscriptions", {"name": "n", "channel": WEBHOOK}, ["name"]),
]


def text_cases() -> list[tuple[str, str, dict[str, Any], str]]:
    return [(m, p, b, f) for m, p, b, fields in TEXT_ROUTES for f in fields]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"), text_cases(), ids=lambda v: v if isinstance(v, str) else ""
)
async def test_a_lone_surrogate_in_any_text_field_is_a_422(
    edge: httpx.AsyncClient, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    sku = new_sku()
    filled = {k: (v.replace("{sku}", sku) if isinstance(v, str) else v) for k, v in body.items()}
    response = await post_raw(edge, path.replace("{sku}", sku), raw_json(filled, field, SURROGATE), method)
    assert_validation(response, field)


async def test_a_lone_surrogate_in_a_list_or_as_a_key_is_a_422(edge: httpx.AsyncClient) -> None:
    content = (
        b'{"name": "n", "categories": ["\\udfff"], "channel": {"kind": "email", "recipients": ["a@b.io"]}}'
    )
    assert_validation(await post_raw(edge, "/v1/notifications/subscriptions", content), "categories")
    content = b'{"sku": "ABC-1", "name": "Mug", "\\ud800": 1}'
    response = await post_raw(edge, "/v1/items", content)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("field", ["name", "category", "dimensions"])
@pytest.mark.parametrize("text", ["Mug\r\nBcc: victim@example.com", "Mug\ttab", "Mug\u2028"])
async def test_one_line_fields_refuse_line_breaks(edge: httpx.AsyncClient, field: str, text: str) -> None:
    body = {"sku": new_sku(), "name": "Mug", field: text}
    assert_validation(await edge.post("/v1/items", json=body), field)
    assert (
        await edge.post("/v1/items", json={**body, field: "Mug", "description": "a\nb"})
    ).status_code == 202


async def test_batch_items_with_hostile_text_are_reported_by_index(edge: httpx.AsyncClient) -> None:
    sku = new_sku()
    content = (
        b'[{"type": "register_item", "sku": "' + sku.encode() + b'", "name": "\\ud800"},'
        b' {"type": "register_item", "sku": "' + sku.encode() + b'", "name": "a\\r\\nb"}]'
    )
    response = await post_raw(edge, "/v1/commands/stock:batch", content)
    assert response.status_code in (400, 422), response.text


async def test_a_query_string_with_a_line_break_or_bad_utf8_is_no_server_error(
    edge: httpx.AsyncClient,
) -> None:
    assert (await edge.get("/v1/items?q=a%0Ab")).status_code == 422
    assert (await edge.get("/v1/items?category=a%E2%80%A8b")).status_code == 422
    assert (await edge.get("/v1/items?q=a%ED%A0%80b")).status_code == 200  # decoded with U+FFFD


# --- instants ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/items/{sku}/reservations", {"reservation_id": "o-1", "quantity": 1}, "expires_at"),
        ("/v1/items/{sku}/prices", {"currency": "EUR", "selling_price": "1.00"}, "effective_from"),
        ("/v1/items/{sku}/prices", {"currency": "EUR", "selling_price": "1.00"}, "effective_until"),
    ],
)
@pytest.mark.parametrize("instant", [HUGE, "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+00:01"])
async def test_an_instant_postgresql_cannot_hold_is_a_422_in_a_body(
    edge: httpx.AsyncClient, path: str, body: dict[str, Any], field: str, instant: str
) -> None:
    response = await edge.post(path.replace("{sku}", new_sku()), json={**body, field: instant})
    assert_validation(response, field)


async def test_an_instant_postgresql_cannot_hold_is_a_422_in_a_batch(edge: httpx.AsyncClient) -> None:
    items = [
        {"type": "reserve_stock", "sku": new_sku(), "reservation_id": "o", "quantity": 1, "expires_at": HUGE}
    ]
    response = await edge.post("/v1/commands/stock:batch", json=items)
    assert_validation(response, "expires_at")


@pytest.mark.parametrize(
    "at",
    [
        "9999-12-31T23:59:59-23:59",
        HUGE,
        "0001-01-01T00:00:00Z",
        "0001-01-15T00:00:00Z",
        "2026-01-01T00:00:00",
    ],
)
async def test_an_out_of_range_or_naive_at_is_a_422(edge: httpx.AsyncClient, at: str) -> None:
    response = await edge.get(f"/v1/items/{new_sku()}/prices/EUR/lowest-prior", params={"at": at})
    assert_validation(response, "at")


async def test_the_extreme_at_values_that_fit_are_answered(edge: httpx.AsyncClient) -> None:
    for at in ("9999-12-31T23:59:59.999999Z", "0001-02-01T00:00:00Z"):
        response = await edge.get(f"/v1/items/{new_sku()}/prices/EUR/lowest-prior", params={"at": at})
        assert response.status_code == 200, response.text


async def test_a_replay_since_postgresql_cannot_hold_is_a_422(edge: httpx.AsyncClient) -> None:
    created = await edge.post(
        "/v1/notifications/subscriptions",
        json={"name": "n", "channel": {"kind": "email", "recipients": ["a@example.com"]}},
    )
    assert created.status_code == 201, created.text
    subscription = f"/v1/notifications/subscriptions/{created.json()['id']}"
    try:
        assert_validation(await edge.post(f"{subscription}/replay", json={"since": HUGE}), "since")
        replay = await edge.post(f"{subscription}/replay", json={"since": "0001-01-01T00:00:00Z"})
        assert replay.status_code == 200, replay.text
    finally:  # it matches every event: later tests must not see deliveries for it
        assert (await edge.delete(subscription)).status_code == 204


# --- numbers -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("price", ["1e3", "1_000", "\u0661\u0662", " 12", "12 ", 12, 12.5, True])
async def test_money_outside_the_decimal_string_format_is_a_422(
    edge: httpx.AsyncClient, price: object
) -> None:
    body = {"currency": "EUR", "selling_price": price}
    assert_validation(await edge.post(f"/v1/items/{new_sku()}/prices", json=body), "selling_price")


@pytest.mark.parametrize("quantity", [True, "12", 12.0, "1_000"])
async def test_a_quantity_that_is_not_a_json_integer_is_a_422(
    edge: httpx.AsyncClient, quantity: object
) -> None:
    response = await edge.post(f"/v1/items/{new_sku()}/receipts", json={"quantity": quantity})
    assert_validation(response, "quantity")
    response = await edge.post(
        "/v1/items", json={"sku": new_sku(), "name": "n", "initial_quantity": quantity}
    )
    assert_validation(response, "initial_quantity")
