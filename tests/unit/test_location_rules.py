"""The stock rules per location, as properties over random command sequences on one SKU: transfers conserve
the total, no location ever goes negative, the totals are the sums over the locations after any command,
and each location's alert fires once per transition."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.common import DEFAULT_LOCATION
from contracts.stock_commands import STOCK_COMMAND_ADAPTER, StockCommand
from contracts.stock_events import (
    BackInStock,
    LocationLevelsSet,
    LowStockDetected,
    OutOfStock,
    OverstockDetected,
    StockChanged,
    StockLevelNormal,
    StockTransferred,
)
from workers.rules.alerts import AlertPolicy, classify
from workers.rules.stock import Applied, ItemState, LocationStock, Reservation, decide
from workers.stock_worker.apply import ledger_rows

SKU = "LOC-1"
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
POLICY = AlertPolicy(clear_margin_pct=20)
ACTIVE = ("default", "WH-1", "store.2")
LOCATIONS = {"WH-1": True, "store.2": True, "closed": False}
ANY_PLACE = st.sampled_from([*ACTIVE, "closed", "nowhere"])
ALERTS = (LowStockDetected, OutOfStock, BackInStock, OverstockDetected, StockLevelNormal)
RIDS = st.sampled_from(["r1", "r2", "r3"])

OPS = st.one_of(
    st.tuples(st.just("receive_stock"), st.fixed_dictionaries({"quantity": st.integers(1, 20)}), ANY_PLACE),
    st.tuples(
        st.just("adjust_stock"),
        st.fixed_dictionaries(
            {"delta": st.integers(-15, 15).filter(bool), "reason_code": st.just("correction")}
        ),
        ANY_PLACE,
    ),
    st.tuples(
        st.just("count_stock"), st.fixed_dictionaries({"counted_quantity": st.integers(0, 25)}), ANY_PLACE
    ),
    st.tuples(
        st.just("reserve_stock"),
        st.fixed_dictionaries({"reservation_id": RIDS, "quantity": st.integers(1, 10)}),
        ANY_PLACE,
    ),
    st.tuples(
        st.sampled_from(["release_reservation", "fulfil_reservation"]),
        st.fixed_dictionaries({"reservation_id": RIDS}),
        st.none(),
    ),
    st.tuples(
        st.just("transfer_stock"),
        st.fixed_dictionaries(
            {"from_location": ANY_PLACE, "to_location": ANY_PLACE, "quantity": st.integers(1, 15)}
        ),
        st.none(),
    ),
    st.tuples(
        st.just("set_location_levels"),
        st.fixed_dictionaries(
            {
                "min_stock_level": st.none() | st.integers(0, 8),
                "max_stock_level": st.none() | st.integers(8, 30),
            }
        ),
        ANY_PLACE,
    ),
    st.tuples(
        st.just("update_item_details"),
        st.fixed_dictionaries({"min_stock_level": st.integers(0, 6)}),
        st.none(),
    ),
)


def command(type_: str, fields: dict[str, Any], location: str | None, n: int) -> StockCommand | None:
    body = {**fields, **({} if location is None else {"location": location})}
    if type_ == "transfer_stock" and body["from_location"] == body["to_location"]:
        return None  # refused by the contract itself
    return STOCK_COMMAND_ADAPTER.validate_python(
        {
            "command_id": uuid.UUID(int=n + 1),
            "sku": SKU,
            "issued_at": NOW,
            "actor": "hypothesis",
            "source": "unit",
            "type": type_,
            **body,
        }
    )


def start(initial: dict[str, int], min_level: int, max_level: int | None) -> ItemState:
    """The item with stock at every active location, as the worker hands it over (every row loaded)."""
    stock = {code: LocationStock(initial.get(code, 0)) for code in ACTIVE}
    total = sum(s.on_hand for s in stock.values())
    return ItemState(SKU, "Mug", total, min_stock_level=min_level, max_stock_level=max_level, stock=stock)


def check_totals(state: ItemState) -> None:
    assert state.on_hand == sum(s.on_hand for s in state.stock.values())
    assert state.reserved == sum(s.reserved for s in state.stock.values())
    for here in state.stock.values():
        assert 0 <= here.reserved <= here.on_hand


@settings(max_examples=300, deadline=None)
@given(
    initial=st.fixed_dictionaries({code: st.integers(0, 20) for code in ACTIVE}),
    min_level=st.integers(0, 6),
    max_level=st.none() | st.integers(6, 40),
    ops=st.lists(OPS, max_size=40),
)
def test_any_command_sequence_keeps_every_location_whole(
    initial: dict[str, int],
    min_level: int,
    max_level: int | None,
    ops: list[tuple[str, dict[str, Any], str | None]],
) -> None:
    state = start(initial, min_level, max_level)
    held: dict[str, Reservation] = {}
    ledger: dict[str, int] = dict(initial)
    for n, (type_, fields, location) in enumerate(ops):
        made = command(type_, fields, location, n)
        if made is None:
            continue
        rid = fields.get("reservation_id")
        outcome = decide(state, held.get(rid) if rid else None, made, NOW, POLICY, LOCATIONS)
        if not isinstance(outcome, Applied):
            continue
        before, state = state, outcome.state
        check_totals(state)
        assert state.version == before.version + 1
        assert all(getattr(e, "version", state.version) == state.version for e in outcome.events)
        if outcome.reservation is not None:
            held[outcome.reservation.reservation_id] = outcome.reservation
        for row in ledger_rows(made, outcome.events, NOW):
            ledger[row.location] = ledger.get(row.location, 0) + row.delta
            assert (row.on_hand_after, row.reserved_after) == (state.on_hand, state.reserved)
        if isinstance(outcome.events[0], StockTransferred):
            assert (state.on_hand, state.reserved) == (before.on_hand, before.reserved)
            moved = [e for e in outcome.events if isinstance(e, StockChanged)]
            assert [e.delta for e in moved] == [-made.quantity, made.quantity]  # type: ignore[union-attr]
        check_location_alerts(before, state, outcome)
    assert {code: s.on_hand for code, s in state.stock.items() if s.on_hand or code in ledger} == {
        code: n for code, n in ledger.items() if n or code in state.stock
    }
    active = [r for r in held.values() if r.status == "active"]
    for code, here in state.stock.items():
        assert here.reserved == sum(r.quantity for r in active if r.location == code)


def check_location_alerts(before: ItemState, after: ItemState, outcome: Applied) -> None:
    """Each location whose stock or effective levels changed is classified from its previous state; an
    alert event (with its location) fires exactly when that state changes, once."""
    by_location: dict[str, list[Any]] = {}
    for event in outcome.events:
        if isinstance(event, ALERTS) and event.location is not None:
            by_location.setdefault(event.location, []).append(event)
    for code, here in after.stock.items():
        was = before.stock.get(code, LocationStock())
        events = by_location.get(code, [])
        if here.alert_state == was.alert_state:
            assert events == []
            continue
        [event] = events
        assert (event.previous, event.current, event.available) == (
            was.alert_state,
            here.alert_state,
            here.available,
        )
        low, high = after.levels_at(here)
        assert (event.min_stock_level, event.max_stock_level) == (low, high)
        assert here.alert_state == classify(
            was.alert_state, here.available, low, high, trackable=after.is_trackable, policy=POLICY
        )
    assert set(by_location) <= set(after.stock)


@given(quantity=st.integers(1, 50), source=st.integers(0, 50), reserved=st.integers(0, 50))
def test_a_transfer_moves_only_available_units(quantity: int, source: int, reserved: int) -> None:
    reserved = min(reserved, source)
    stock = {"WH-1": LocationStock(source, reserved), "store.2": LocationStock(0)}
    state = ItemState(SKU, "Mug", source, reserved, stock=stock)
    made = command(
        "transfer_stock", {"from_location": "WH-1", "to_location": "store.2", "quantity": quantity}, None, 0
    )
    assert made is not None
    outcome = decide(state, None, made, NOW, POLICY, LOCATIONS)
    if quantity > source - reserved:
        assert not isinstance(outcome, Applied)
        assert outcome.code == "insufficient_stock"
        return
    assert isinstance(outcome, Applied)
    after = outcome.state.stock
    assert (after["WH-1"].on_hand, after["WH-1"].reserved) == (source - quantity, reserved)
    assert after["store.2"].on_hand == quantity
    assert after["WH-1"].on_hand + after["store.2"].on_hand == source


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"type": "receive_stock", "quantity": 1, "location": "nowhere"}, "unknown_location"),
        ({"type": "receive_stock", "quantity": 1, "location": "closed"}, "inactive_location"),
        (
            {"type": "reserve_stock", "reservation_id": "r", "quantity": 1, "location": "closed"},
            "inactive_location",
        ),
        (
            {"type": "transfer_stock", "from_location": "nowhere", "to_location": "WH-1", "quantity": 1},
            "unknown_location",
        ),
        (
            {"type": "transfer_stock", "from_location": "WH-1", "to_location": "closed", "quantity": 1},
            "inactive_location",
        ),
        ({"type": "set_location_levels", "location": "closed", "min_stock_level": 1}, "inactive_location"),
        ({"type": "register_item", "name": "n", "location": "nowhere"}, "unknown_location"),
    ],
)
def test_unknown_and_inactive_locations_are_rejected(fields: dict[str, Any], code: str) -> None:
    state = start({"WH-1": 5}, 0, None)
    made = command(fields.pop("type"), fields, None, 0)
    assert made is not None
    outcome = decide(None if made.type == "register_item" else state, None, made, NOW, POLICY, LOCATIONS)
    assert not isinstance(outcome, Applied)
    assert outcome.code == code


def test_stock_leaves_an_inactive_location_and_closes_reservations_there() -> None:
    stock = {"closed": LocationStock(5, 2), DEFAULT_LOCATION: LocationStock(0)}
    state = ItemState(SKU, "Mug", 5, 2, stock=stock)
    out = command(
        "transfer_stock", {"from_location": "closed", "to_location": "default", "quantity": 3}, None, 0
    )
    assert out is not None
    moved = decide(state, None, out, NOW, POLICY, LOCATIONS)
    assert isinstance(moved, Applied)
    held = Reservation("r", SKU, 2, "active", location="closed")
    release = command("release_reservation", {"reservation_id": "r"}, None, 1)
    assert release is not None
    released = decide(moved.state, held, release, NOW, POLICY, LOCATIONS)
    assert isinstance(released, Applied)
    assert released.state.stock["closed"] == LocationStock(2, 0)


def test_location_levels_follow_the_item_until_set() -> None:
    state = start({"WH-1": 4}, 2, None)
    levels = command("set_location_levels", {"min_stock_level": 5}, "WH-1", 0)
    assert levels is not None
    set_ = decide(state, None, levels, NOW, POLICY, LOCATIONS)
    assert isinstance(set_, Applied)
    kinds = [(type(e), getattr(e, "location", None)) for e in set_.events]
    assert kinds == [(LocationLevelsSet, "WH-1"), (LowStockDetected, "WH-1")]
    assert set_.state.alert_state == "ok"  # the total (4) is above the item's level (2)
    cleared = command("set_location_levels", {}, "WH-1", 1)
    assert cleared is not None
    back = decide(set_.state, None, cleared, NOW, POLICY, LOCATIONS)
    assert isinstance(back, Applied)
    assert back.state.stock["WH-1"].alert_state == "ok"
    assert [type(e) for e in back.events] == [LocationLevelsSet, StockLevelNormal]
