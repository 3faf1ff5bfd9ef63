"""The relay's location decisions (issue 19): which locations an event names, the location filter, and
coalescing per (SKU, location)."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError

from api_edge.relay.hub import Sub
from api_edge.relay.protocol import Match, event_locations
from contracts.live import MAX_FILTER_LOCATIONS, Filter
from infra.live_redis import LiveMessage


def test_event_locations_reads_the_top_level_location_keys() -> None:
    assert event_locations('{"type": "stock_changed", "location": "WH-EU-1", "on_hand": 3}') == ("WH-EU-1",)
    assert event_locations('{"type":"stock_transferred","from_location":"A","to_location":"B"}') == ("A", "B")
    assert event_locations('{"type": "low_stock_detected", "location": null}') == ()  # the SKU-level alert
    assert event_locations('{"type": "item_details_updated", "changes": {"name": "N"}}') == ()
    # A location mentioned inside a text is not the event's location.
    note = json.dumps({"type": "command_rejected", "reason": 'bad "location": "X"'})
    assert event_locations(note) == ()


def test_location_filter_drops_other_locations_and_passes_events_without_one() -> None:
    match = Match.of(Filter(locations=["WH-EU-1", "STORE-1"]))
    assert not match.everything
    assert match.accepts("A", None, False, ("WH-EU-1",))
    assert not match.accepts("A", None, False, ("default",))
    assert match.accepts("A", None, False, ())  # item details, prices, SKU-level alerts, rejections
    assert match.accepts("A", None, False, ("default", "STORE-1"))  # a transfer into a wanted location
    assert not match.accepts("A", None, False, ("default", "WH-2"))
    both = Match.of(Filter(skus=["A"], locations=["WH-EU-1"]))
    assert not both.accepts("B", None, False, ("WH-EU-1",))
    assert Match.of(Filter(locations=["wh-eu-1"])).accepts("A", None, False, ("wh-eu-1",))
    assert not Match.of(Filter(locations=["wh-eu-1"])).accepts("A", None, False, ("WH-EU-1",))


def test_location_filter_is_bounded_and_checked() -> None:
    Filter(locations=[f"L{i}" for i in range(MAX_FILTER_LOCATIONS)])
    for bad in ([f"L{i}" for i in range(MAX_FILTER_LOCATIONS + 1)], [], ["no spaces"], ["-dash-first"]):
        with pytest.raises(ValidationError):
            Filter(locations=bad)


class Recorder:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def send(self, frame: bytes) -> None:
        self.frames.append(frame)


def stock(offset: int, sku: str, location: str) -> tuple[LiveMessage, bytes, tuple[str, ...]]:
    payload = json.dumps({"type": "stock_changed", "sku": sku, "location": location, "version": offset})
    message = LiveMessage(offset, "e", sku, "stock_changed", payload)
    return message, str(offset).encode(), event_locations(payload)


async def test_coalescing_keeps_the_newest_frame_of_each_location() -> None:
    client = Recorder()
    sub = Sub(client, "inventory", Match.of(None), coalesce_s=60.0)  # type: ignore[arg-type]
    assert sub.needs_locations
    # A transfer's two stock_changed share the SKU: both locations' newest must reach the client.
    for offset, sku, location in [(1, "A", "default"), (2, "A", "WH"), (3, "A", "default"), (4, "B", "WH"),
                                  (5, "A", "WH")]:  # fmt: skip
        sub.offer(*stock(offset, sku, location))
    assert client.frames == []
    sub.release()
    assert client.frames == [b"3", b"4", b"5"], "in offset order, one per (SKU, location)"
    sub.drop()
    await asyncio.sleep(0)
