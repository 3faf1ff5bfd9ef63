"""Live channels and stock by location (issue 19), with plain `websockets` clients against the real relay: a
location filter keeps its location's publications and those that name no location, also on recovery;
coalescing keeps the newest stock of each location of a SKU; a transfer through the edge reaches a
location-filtered subscriber, and its snapshot shows only that location's stock."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from infra.live_redis import LiveRedis
from infra.settings import Settings
from tests.e2e.live_support import connected, next_frame, relay_process, subscribe, token, url_of
from tests.e2e.support import new_sku, wait_for_status

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def relay_url(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A relay of its own: the tests that publish by hand need no edge or worker."""
    with relay_process(tmp_path_factory.mktemp("live-locations-logs")) as relay:
        yield url_of(relay)


def event(sku: str, type_: str, version: int, **fields: Any) -> tuple[str, str, str]:
    body = {"event_id": str(uuid.uuid4()), "sku": sku, "type": type_, "version": version,
            "occurred_at": datetime.now(UTC).isoformat(), **fields}  # fmt: skip
    return sku, type_, json.dumps(body)


def stock(sku: str, version: int, location: str | None) -> tuple[str, str, str]:
    at = {} if location is None else {"location": location, "location_on_hand": version}
    return event(sku, "stock_changed", version, on_hand=version, reserved=0, available=version, **at)


async def publish(stack: Settings, channel: str, events: list[tuple[str, str, str]]) -> int:
    """Publish as the outbox relay does (one script call); the channel's last offset."""
    redis = Redis.from_url(stack.redis_url)
    try:
        return await LiveRedis(redis).publish(channel, events, history=stack.live_history_size)
    finally:
        await redis.aclose()


async def settled(stack: Settings, ws: ClientConnection, sku: str, **fields: Any) -> int:
    """Subscribe to `inventory` and publish one event of `sku` until it arrives as a `pub` (an earlier test
    may have started a new epoch: the relay then rightly sends `reset` and the client subscribes again).
    The offset of that publication."""
    await subscribe(ws, "inventory", **fields)
    for _ in range(3):
        await publish(stack, "inventory", [stock(sku, 1, None)])  # names no location: passes any filter
        frame = await next_frame(ws, ("pub", "reset"))
        if frame["type"] == "pub":
            return int(frame["offset"])
        await subscribe(ws, "inventory", **fields)
    raise AssertionError("the relay kept resetting the channel")


async def pubs_until(ws: ClientConnection, done: Any) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or not done(frames):
        frames.append(await next_frame(ws, "pub"))
    return frames


async def test_a_location_filter_keeps_its_location_and_events_without_one(
    relay_url: str, stack: Settings
) -> None:
    sku = new_sku()
    wanted = {"filter": {"skus": [sku], "locations": ["WH-A"]}}
    async with connected(relay_url, token(stack)) as ws:
        start = await settled(stack, ws, sku, **wanted)
        await publish(stack, "inventory", [
            stock(sku, 2, "default"),  # dropped
            stock(sku, 3, "WH-A"),
            event(sku, "item_details_updated", 4, changes={"name": "N"}),  # names no location
            event(sku, "stock_transferred", 5, from_location="default", to_location="WH-B", quantity=1),
            event(sku, "stock_transferred", 6, from_location="WH-A", to_location="default", quantity=1),
            event(sku, "location_levels_set", 7, location="WH-B", min_stock_level=1),
            event(sku, "reservation_made", 8, location="WH-A", reservation_id="r", quantity=1),
            stock(sku, 9, None),  # written before locations existed: names none
            stock(sku, 10, "WH-A"),
        ])  # fmt: skip
        frames = await pubs_until(ws, lambda f: f[-1]["event"]["version"] == 10)
        assert [f["event"]["version"] for f in frames] == [3, 4, 6, 8, 9, 10]
        offsets = [f["offset"] for f in frames]
        assert offsets == sorted(offsets)
        assert offsets[0] > start

        alerts = {"filter": {"skus": [sku], "locations": ["WH-A"]}}
        await subscribe(ws, "alerts", **alerts)
        low = {"previous": "ok", "current": "low", "available": 1, "min_stock_level": 2,
               "max_stock_level": None}  # fmt: skip
        await publish(stack, "alerts", [
            event(sku, "low_stock_detected", 11, location="default", **low),  # another location's alert
            event(sku, "low_stock_detected", 12, location="WH-A", **low),
            event(sku, "low_stock_detected", 13, location=None, **low),  # the item's, on its totals
        ])  # fmt: skip
        got = await pubs_until(ws, lambda f: f[-1]["event"]["version"] == 13)
        assert [(f["event"]["version"], f["event"]["location"]) for f in got] == [(12, "WH-A"), (13, None)]

    # Recovery filters the history the same way.
    async with connected(relay_url, token(stack)) as again:
        epoch = frames[0]["epoch"]
        reply = await subscribe(again, "inventory", **wanted, recover={"epoch": epoch, "offset": start})
        assert reply["recovered"] is True
        assert [p["event"]["version"] for p in reply["publications"]] == [3, 4, 6, 8, 9, 10]


async def test_coalescing_keeps_the_newest_stock_of_each_location(relay_url: str, stack: Settings) -> None:
    sku = new_sku()
    fields = {"filter": {"skus": [sku]}, "coalesce_ms": 300}
    async with connected(relay_url, token(stack)) as ws:
        await settled(stack, ws, sku, **fields)
        # One hot SKU at two locations (a run of transfers): 40 changes within a few ms, one window.
        events = [stock(sku, v, "WH-A" if v % 2 else "WH-B") for v in range(2, 42)]
        last = await publish(stack, "inventory", events)
        frames = await pubs_until(ws, lambda f: f[-1]["offset"] == last)
    newest = {f["event"]["location"]: f["event"]["version"] for f in frames}
    assert newest == {"WH-A": 41, "WH-B": 40}, "each location's newest stock arrives"
    assert len(frames) < 10, [(f["event"]["location"], f["offset"]) for f in frames]
    offsets = [f["offset"] for f in frames]
    assert offsets == sorted(set(offsets))


async def applied(edge: httpx.AsyncClient, response: httpx.Response) -> None:
    assert response.status_code in (200, 202), response.text
    assert (await wait_for_status(edge, response.json()["command_id"]))["status"] == "applied"


async def test_a_transfer_reaches_the_subscribers_of_its_locations(
    edge: httpx.AsyncClient, live_url: str, stack: Settings
) -> None:
    store = f"ST-{uuid.uuid4().hex[:8]}"
    created = await edge.post("/v1/locations", json={"code": store, "name": "Store", "kind": "store"})
    assert created.status_code == 201, created.text
    sku = new_sku()
    await applied(edge, await edge.post("/v1/items", json={"sku": sku, "name": "T", "initial_quantity": 10}))
    at_store = {"filter": {"skus": [sku], "locations": [store]}}
    async with (
        connected(live_url, token(stack)) as filtered,
        connected(live_url, token(stack)) as dashboard,
    ):
        before = await subscribe(filtered, "inventory", **at_store)
        assert before["snapshot"] == [], "no stock at the store yet"
        whole = await subscribe(dashboard, "inventory", filter={"skus": [sku]}, coalesce_ms=250)
        assert [loc["location"] for loc in whole["snapshot"][0]["locations"]] == ["default"]

        transfer = {"from_location": "default", "to_location": store, "quantity": 4}
        await applied(edge, await edge.post(f"/v1/items/{sku}/stock/transfer", json=transfer))

        seen = await pubs_until(filtered, lambda f: f[-1]["event"]["type"] == "stock_changed")
        changes = [f["event"] for f in seen if f["event"]["type"] == "stock_changed"]
        assert [(c["location"], c["location_on_hand"], c["on_hand"]) for c in changes] == [(store, 4, 10)]
        assert "stock_transferred" in [f["event"]["type"] for f in seen]

        # Coalescing (as the dashboard asks) still delivers both locations' stock of the one transfer.
        both = await pubs_until(
            dashboard, lambda f: {e["event"].get("location") for e in f} >= {"default", store}
        )
        levels = {f["event"]["location"]: f["event"]["location_available"] for f in both
                  if f["event"]["type"] == "stock_changed"}  # fmt: skip
        assert levels == {"default": 6, store: 4}

        after = await subscribe(filtered, "inventory", **at_store)
        [row] = after["snapshot"]
        assert (row["sku"], row["on_hand"], row["available"]) == (sku, 10, 10), "totals stay the SKU's"
        assert row["locations"] == [
            {"location": store, "on_hand": 4, "reserved": 0, "available": 4, "alert_state": "ok",
             "min_stock_level": row["min_stock_level"], "max_stock_level": row["max_stock_level"],
             "own_levels": False}
        ]  # fmt: skip
