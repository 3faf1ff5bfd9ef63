"""The pure stock rules: `decide(state, reservation, command, now, policy) -> Applied | Rejected`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from hypothesis import event as record_event
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)
from pydantic import BaseModel

from contracts.common import DEFAULT_LOCATION
from contracts.stock_commands import (
    AdjustStock,
    CountStock,
    DeactivateItem,
    ExpireReservation,
    FulfilReservation,
    ReactivateItem,
    ReceiveStock,
    RegisterItem,
    ReleaseReservation,
    ReservationCommand,
    ReserveStock,
    StockCommand,
    UpdateItemDetails,
)
from contracts.stock_events import (
    AlertState,
    BackInStock,
    CommandRejected,
    ItemDeactivated,
    ItemDetailsUpdated,
    ItemReactivated,
    ItemRegistered,
    LowStockDetected,
    OutOfStock,
    OverstockDetected,
    RejectionCode,
    ReservationExpired,
    ReservationFulfilled,
    ReservationMade,
    ReservationReleased,
    StockChanged,
    StockEvent,
    StockLevelNormal,
)
from workers.rules.alerts import AlertPolicy, classify, transition_event_type
from workers.rules.ids import event_id
from workers.rules.stock import (
    Applied,
    ItemState,
    LocationStock,
    Outcome,
    Rejected,
    Reservation,
    ReservationStatus,
    decide,
)
from workers.stock_worker.apply import ledger_rows

SKU = "ABC-1"
OTHER_SKU = "XYZ-9"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)

C = TypeVar("C", bound=BaseModel)


def make(cls: type[C], **fields: Any) -> C:
    envelope = {
        "command_id": uuid.uuid4(),
        "sku": SKU,
        "issued_at": NOW,
        "actor": "tester",
        "source": "unit",
    }
    return cls.model_validate({**envelope, **fields})


def item(**fields: Any) -> ItemState:
    """An item with all its stock at the default location (as an item was before locations)."""
    state = ItemState(**{"sku": SKU, "name": "Blue mug", "on_hand": 10, **fields})
    if "stock" in fields:
        return state
    whole = LocationStock(state.on_hand, state.reserved, alert_state=state.alert_state)
    return state._replace(stock={DEFAULT_LOCATION: whole})


def reservation(
    quantity: int = 3,
    status: ReservationStatus = "active",
    expires_at: datetime | None = None,
    sku: str = SKU,
    reservation_id: str = "order-1",
) -> Reservation:
    return Reservation(reservation_id, sku, quantity, status, expires_at)


def applied(outcome: Outcome) -> Applied:
    assert isinstance(outcome, Applied), outcome
    return outcome


def rejected(outcome: Outcome, code: RejectionCode) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.code == code, outcome.reason
    return outcome


SKU_ALERTS = (LowStockDetected, OutOfStock, BackInStock, OverstockDetected, StockLevelNormal)


def sku_level(events: Iterable[StockEvent]) -> list[StockEvent]:
    """The events as before locations: without each location's own alerts (test_location_rules.py)."""
    return [e for e in events if not (isinstance(e, SKU_ALERTS) and e.location is not None)]


def kinds(events: tuple[StockEvent, ...]) -> list[type[StockEvent]]:
    return [type(e) for e in sku_level(events)]


def stock_changed(outcome: Applied) -> StockChanged:
    [changed] = [e for e in outcome.events if isinstance(e, StockChanged)]
    return changed


# A command of each type that applies to item(reserved=3, version=4) holding reservation() "order-1".
COMMAND_MAKERS: dict[str, Callable[..., StockCommand]] = {
    "update_item_details": lambda **kw: make(UpdateItemDetails, min_stock_level=2, **kw),
    "deactivate_item": lambda **kw: make(DeactivateItem, **kw),
    "receive_stock": lambda **kw: make(ReceiveStock, quantity=5, **kw),
    "adjust_stock": lambda **kw: make(AdjustStock, delta=-1, reason_code="damage", **kw),
    "count_stock": lambda **kw: make(CountStock, counted_quantity=8, **kw),
    "reserve_stock": lambda **kw: make(ReserveStock, reservation_id="order-2", quantity=1, **kw),
    "release_reservation": lambda **kw: make(ReleaseReservation, reservation_id="order-1", **kw),
    "fulfil_reservation": lambda **kw: make(FulfilReservation, reservation_id="order-1", **kw),
}
CLOSERS: dict[str, type[ReleaseReservation | FulfilReservation | ExpireReservation]] = {
    "release_reservation": ReleaseReservation,
    "fulfil_reservation": FulfilReservation,
    "expire_reservation": ExpireReservation,
}


# --- register --------------------------------------------------------------------------------------


def test_register_creates_the_item_at_version_1() -> None:
    command = make(
        RegisterItem,
        name="Blue mug",
        category="kitchen",
        initial_quantity=12,
        min_stock_level=5,
        max_stock_level=50,
        cost_price=Decimal("2.35"),
    )
    outcome = applied(decide(None, None, command, NOW))
    state = outcome.state
    assert (state.sku, state.name, state.category) == (SKU, "Blue mug", "kitchen")
    assert (state.on_hand, state.reserved, state.available) == (12, 0, 12)
    assert (state.min_stock_level, state.max_stock_level, state.cost_price) == (5, 50, Decimal("2.35"))
    assert (state.version, state.is_active, state.alert_state) == (1, True, "ok")
    [event] = outcome.events
    assert isinstance(event, ItemRegistered)
    assert (event.on_hand, event.version, event.cost_price) == (12, 1, Decimal("2.35"))
    assert outcome.reservation is None


@pytest.mark.parametrize(
    ("initial", "min_level", "max_level", "alert"),
    [(0, 5, None, "out"), (3, 5, None, "low"), (5, 5, None, "low"), (6, 5, None, "ok"), (11, 0, 10, "over")],
)
def test_register_classifies_the_initial_quantity(
    initial: int, min_level: int, max_level: int | None, alert: AlertState
) -> None:
    command = make(
        RegisterItem,
        name="Mug",
        initial_quantity=initial,
        min_stock_level=min_level,
        max_stock_level=max_level,
    )
    outcome = applied(decide(None, None, command, NOW))
    assert outcome.state.alert_state == alert
    # The alert is announced like any later transition: after item_registered, from "ok".
    registered, *alerts = sku_level(outcome.events)
    assert isinstance(registered, ItemRegistered)
    expected = transition_event_type("ok", alert)
    assert [type(e) for e in alerts] == ([] if expected is None else [expected])
    for event in alerts:
        assert isinstance(event, ALERT_EVENTS)
        assert (event.previous, event.current, event.available) == ("ok", alert, initial)
        assert (event.min_stock_level, event.max_stock_level) == (min_level, max_level)
        assert event.command_id == command.command_id


@given(
    initial=st.integers(0, 10_000),
    min_level=st.integers(0, 10_000),
    headroom=st.none() | st.integers(0, 10_000),
    trackable=st.booleans(),
)
def test_register_alerts_exactly_when_the_item_is_not_ok(
    initial: int, min_level: int, headroom: int | None, trackable: bool
) -> None:
    max_level = None if headroom is None else min_level + headroom
    command = make(
        RegisterItem,
        name="Mug",
        initial_quantity=initial,
        min_stock_level=min_level,
        max_stock_level=max_level,
        is_trackable=trackable,
    )
    outcome = applied(decide(None, None, command, NOW))
    alerts = [e for e in sku_level(outcome.events) if isinstance(e, ALERT_EVENTS)]
    state = classify("ok", initial, min_level, max_level, trackable=trackable, policy=AlertPolicy())
    assert outcome.state.alert_state == state
    assert [(e.previous, e.current) for e in alerts] == ([] if state == "ok" else [("ok", state)])
    assert len({e.event_id for e in outcome.events}) == len(outcome.events)


def test_register_of_a_known_sku_is_rejected() -> None:
    outcome = rejected(decide(item(), None, make(RegisterItem, name="Mug"), NOW), "already_exists")
    assert isinstance(outcome.event, CommandRejected)
    assert outcome.event.command_type == "register_item"


def test_register_writes_the_initial_quantity_to_the_ledger() -> None:
    command = make(RegisterItem, name="Mug", initial_quantity=7)
    outcome = applied(decide(None, None, command, NOW))
    [row] = ledger_rows(command, outcome.events, NOW)
    assert (row.delta, row.reserved_delta, row.reason, row.on_hand_after) == (7, 0, "initial_quantity", 7)
    empty = make(RegisterItem, name="Mug")
    assert ledger_rows(empty, applied(decide(None, None, empty, NOW)).events, NOW) == []


ALL_BUT_REGISTER: dict[str, Callable[..., StockCommand]] = {
    **COMMAND_MAKERS,
    "reactivate_item": lambda **kw: make(ReactivateItem, **kw),
    "expire_reservation": lambda **kw: make(ExpireReservation, reservation_id="order-1", **kw),
}


@pytest.mark.parametrize("name", list(ALL_BUT_REGISTER))
def test_every_other_command_on_an_unknown_sku_is_rejected(name: str) -> None:
    outcome = rejected(decide(None, reservation(), ALL_BUT_REGISTER[name](), NOW), "unknown_sku")
    assert outcome.event.command_type == name


# --- update ----------------------------------------------------------------------------------------


def test_update_changes_only_the_given_fields() -> None:
    state = item(description="old", category="kitchen", version=4)
    command = make(UpdateItemDetails, name="Red mug", description=None, cost_price="3.10")
    outcome = applied(decide(state, None, command, NOW))
    assert outcome.state == state._replace(
        name="Red mug", description=None, cost_price=Decimal("3.10"), version=5
    )
    [event] = outcome.events
    assert isinstance(event, ItemDetailsUpdated)
    assert event.changes == {"name": "Red mug", "description": None, "cost_price": "3.10"}
    assert event.version == 5


def test_update_of_levels_reclassifies_the_alert_state() -> None:
    outcome = applied(decide(item(on_hand=10), None, make(UpdateItemDetails, min_stock_level=10), NOW))
    assert outcome.state.alert_state == "low"
    assert kinds(outcome.events) == [ItemDetailsUpdated, LowStockDetected]


def test_making_an_item_untracked_clears_its_alert() -> None:
    state = item(on_hand=0, alert_state="out")
    outcome = applied(decide(state, None, make(UpdateItemDetails, is_trackable=False), NOW))
    assert outcome.state.alert_state == "ok"
    assert kinds(outcome.events) == [ItemDetailsUpdated, BackInStock]


@pytest.mark.parametrize(
    ("state_levels", "change"),
    [
        ({"min_stock_level": 5, "max_stock_level": 10}, {"max_stock_level": 4}),
        ({"min_stock_level": 5, "max_stock_level": 10}, {"min_stock_level": 11}),
        ({"min_stock_level": 0, "max_stock_level": None}, {"min_stock_level": 9, "max_stock_level": 8}),
    ],
)
def test_update_leaving_max_below_min_is_rejected(
    state_levels: dict[str, Any], change: dict[str, Any]
) -> None:
    rejected(decide(item(**state_levels), None, make(UpdateItemDetails, **change), NOW), "invalid_state")


def test_update_applies_to_an_inactive_item() -> None:
    outcome = applied(decide(item(is_active=False), None, make(UpdateItemDetails, name="Old mug"), NOW))
    assert outcome.state.name == "Old mug"


# --- deactivate / reactivate -----------------------------------------------------------------------


def test_deactivate_and_reactivate() -> None:
    off = applied(decide(item(), None, make(DeactivateItem, reason="discontinued"), NOW))
    assert (off.state.is_active, off.state.version) == (False, 2)
    [event] = off.events
    assert isinstance(event, ItemDeactivated)
    assert (event.reason, event.version) == ("discontinued", 2)
    on = applied(decide(off.state, None, make(ReactivateItem), NOW))
    assert (on.state.is_active, on.state.version) == (True, 3)
    assert kinds(on.events) == [ItemReactivated]


def test_deactivating_an_inactive_item_is_rejected() -> None:
    rejected(decide(item(is_active=False), None, make(DeactivateItem), NOW), "invalid_state")


def test_reactivating_an_active_item_is_rejected() -> None:
    rejected(decide(item(), None, make(ReactivateItem), NOW), "invalid_state")


@pytest.mark.parametrize("name", ["receive_stock", "adjust_stock", "count_stock", "reserve_stock"])
def test_stock_commands_on_an_inactive_item_are_rejected(name: str) -> None:
    rejected(decide(item(is_active=False), None, COMMAND_MAKERS[name](), NOW), "inactive_item")


@pytest.mark.parametrize("name", ["release_reservation", "fulfil_reservation"])
def test_closing_reservations_of_an_inactive_item_is_allowed(name: str) -> None:
    state = item(is_active=False, reserved=3)
    applied(decide(state, reservation(), COMMAND_MAKERS[name](), NOW))


# --- receive / adjust / count ----------------------------------------------------------------------


def test_receive_adds_to_on_hand() -> None:
    outcome = applied(decide(item(on_hand=10, reserved=2), None, make(ReceiveStock, quantity=24), NOW))
    assert (outcome.state.on_hand, outcome.state.reserved, outcome.state.version) == (34, 2, 2)
    event = stock_changed(outcome)
    assert (event.delta, event.reserved_delta, event.reason) == (24, 0, "receive_stock")
    assert (event.on_hand, event.reserved, event.available, event.version) == (34, 2, 32, 2)


@pytest.mark.parametrize("delta", [-10, -3, 1, 5])
def test_adjust_changes_on_hand_with_its_reason_code(delta: int) -> None:
    command = make(AdjustStock, delta=delta, reason_code="found" if delta > 0 else "loss")
    outcome = applied(decide(item(on_hand=10), None, command, NOW))
    assert outcome.state.on_hand == 10 + delta
    assert stock_changed(outcome).reason == command.reason_code


@pytest.mark.parametrize(("reserved", "delta"), [(0, -11), (3, -8), (10, -1)])
def test_adjust_below_reserved_is_rejected(reserved: int, delta: int) -> None:
    command = make(AdjustStock, delta=delta, reason_code="theft")
    rejected(decide(item(on_hand=10, reserved=reserved), None, command, NOW), "insufficient_stock")


def test_adjust_down_to_exactly_reserved_is_applied() -> None:
    command = make(AdjustStock, delta=-7, reason_code="theft")
    assert applied(decide(item(on_hand=10, reserved=3), None, command, NOW)).state.on_hand == 3


@pytest.mark.parametrize("counted", [0, 3, 10, 40])
def test_count_sets_on_hand(counted: int) -> None:
    outcome = applied(decide(item(on_hand=10), None, make(CountStock, counted_quantity=counted), NOW))
    assert outcome.state.on_hand == counted
    assert stock_changed(outcome).delta == counted - 10
    assert outcome.state.version == 2


def test_count_below_reserved_is_rejected() -> None:
    state = item(on_hand=10, reserved=4)
    rejected(decide(state, None, make(CountStock, counted_quantity=3), NOW), "insufficient_stock")
    assert applied(decide(state, None, make(CountStock, counted_quantity=4), NOW)).state.available == 0


# --- reserve ---------------------------------------------------------------------------------------


def test_reserve_holds_units() -> None:
    command = make(ReserveStock, reservation_id="order-7", quantity=4, expires_at=LATER)
    outcome = applied(decide(item(on_hand=10, min_stock_level=2), None, command, NOW))
    assert (outcome.state.on_hand, outcome.state.reserved, outcome.state.available) == (10, 4, 6)
    assert outcome.reservation == Reservation("order-7", SKU, 4, "active", LATER, command.command_id)
    assert kinds(outcome.events) == [ReservationMade, StockChanged]
    made = outcome.events[0]
    assert isinstance(made, ReservationMade)
    assert (made.reservation_id, made.quantity, made.expires_at) == ("order-7", 4, LATER)
    event = stock_changed(outcome)
    assert (event.delta, event.reserved_delta, event.reason) == (0, 4, "reserve_stock")


def test_reserving_everything_available_is_allowed_and_alerts() -> None:
    command = make(ReserveStock, reservation_id="order-7", quantity=7)
    outcome = applied(decide(item(on_hand=10, reserved=3), None, command, NOW))
    assert outcome.state.available == 0
    assert kinds(outcome.events) == [ReservationMade, StockChanged, OutOfStock]


@pytest.mark.parametrize(("on_hand", "reserved", "quantity"), [(10, 0, 11), (10, 3, 8), (0, 0, 1)])
def test_reserving_more_than_available_is_rejected(on_hand: int, reserved: int, quantity: int) -> None:
    command = make(ReserveStock, reservation_id="order-7", quantity=quantity)
    outcome = rejected(
        decide(item(on_hand=on_hand, reserved=reserved), None, command, NOW), "insufficient_stock"
    )
    assert outcome.event.command_type == "reserve_stock"


@pytest.mark.parametrize(
    "existing",
    [
        reservation(reservation_id="order-7"),
        reservation(reservation_id="order-7", status="released"),
        reservation(reservation_id="order-7", status="fulfilled"),
        reservation(reservation_id="order-7", status="expired"),
    ],
    ids=["active", "released", "fulfilled", "expired"],
)
def test_reserving_an_existing_reservation_id_is_rejected(existing: Reservation) -> None:
    command = make(ReserveStock, reservation_id="order-7", quantity=1)
    rejected(decide(item(reserved=3), existing, command, NOW), "reservation_exists")


@pytest.mark.parametrize("expires_at", [NOW, NOW - timedelta(seconds=1)])
def test_reserving_with_an_expiry_not_in_the_future_is_rejected(expires_at: datetime) -> None:
    command = make(ReserveStock, reservation_id="order-7", quantity=1, expires_at=expires_at)
    rejected(decide(item(), None, command, NOW), "invalid_state")


# --- release / fulfil / expire ---------------------------------------------------------------------


def test_release_gives_units_back() -> None:
    outcome = applied(
        decide(item(on_hand=10, reserved=3), reservation(3), COMMAND_MAKERS["release_reservation"](), NOW)
    )
    assert (outcome.state.on_hand, outcome.state.reserved) == (10, 0)
    assert outcome.reservation == reservation(3, "released")
    assert kinds(outcome.events) == [ReservationReleased, StockChanged]
    assert (stock_changed(outcome).delta, stock_changed(outcome).reserved_delta) == (0, -3)


def test_fulfil_ships_units() -> None:
    outcome = applied(
        decide(item(on_hand=10, reserved=3), reservation(3), COMMAND_MAKERS["fulfil_reservation"](), NOW)
    )
    assert (outcome.state.on_hand, outcome.state.reserved) == (7, 0)
    assert outcome.reservation == reservation(3, "fulfilled")
    assert kinds(outcome.events) == [ReservationFulfilled, StockChanged]
    assert (stock_changed(outcome).delta, stock_changed(outcome).reserved_delta) == (-3, -3)


@pytest.mark.parametrize("now", [LATER, LATER + timedelta(days=3)])
def test_expire_after_the_expiry_releases_units(now: datetime) -> None:
    command = make(ExpireReservation, reservation_id="order-1")
    outcome = applied(decide(item(on_hand=10, reserved=3), reservation(3, expires_at=LATER), command, now))
    assert (outcome.state.on_hand, outcome.state.reserved) == (10, 0)
    assert outcome.reservation == reservation(3, "expired", LATER)
    assert kinds(outcome.events) == [ReservationExpired, StockChanged]


@pytest.mark.parametrize("expires_at", [None, LATER], ids=["no-expiry", "future"])
def test_expire_before_the_expiry_is_rejected(expires_at: datetime | None) -> None:
    command = make(ExpireReservation, reservation_id="order-1")
    rejected(decide(item(reserved=3), reservation(3, expires_at=expires_at), command, NOW), "not_expired")


@pytest.mark.parametrize("name", list(CLOSERS))
@pytest.mark.parametrize("existing", [None, reservation(sku=OTHER_SKU)], ids=["missing", "other-sku"])
def test_closing_an_unknown_reservation_is_rejected(name: str, existing: Reservation | None) -> None:
    command = make(CLOSERS[name], reservation_id="order-1")
    rejected(decide(item(reserved=3), existing, command, LATER), "unknown_reservation")


@pytest.mark.parametrize("name", list(CLOSERS))
@pytest.mark.parametrize("status", ["released", "fulfilled", "expired"])
def test_closing_a_closed_reservation_is_rejected(name: str, status: ReservationStatus) -> None:
    command = make(CLOSERS[name], reservation_id="order-1")
    closed = reservation(3, status, expires_at=NOW)
    rejected(decide(item(), closed, command, LATER), "reservation_closed")


# --- expected_version ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(COMMAND_MAKERS))
@pytest.mark.parametrize("expected", [0, 3, 5])
def test_a_stale_expected_version_is_rejected(name: str, expected: int) -> None:
    state = item(reserved=3, version=4)
    outcome = decide(state, reservation(), COMMAND_MAKERS[name](expected_version=expected), NOW)
    rejected(outcome, "version_mismatch")


@pytest.mark.parametrize("name", list(COMMAND_MAKERS))
def test_a_matching_expected_version_is_applied(name: str) -> None:
    state = item(reserved=3, version=4)
    held = None if name == "reserve_stock" else reservation()
    outcome = applied(decide(state, held, COMMAND_MAKERS[name](expected_version=4), NOW))
    assert outcome.state.version == 5


def test_version_mismatch_is_checked_before_the_item_is_active() -> None:
    command = make(ReceiveStock, quantity=1, expected_version=1)
    rejected(decide(item(is_active=False, version=2), None, command, NOW), "version_mismatch")


# --- ids, versions, rejections ---------------------------------------------------------------------


def test_event_ids_are_deterministic_and_distinct_within_a_command() -> None:
    state = item(on_hand=10, reserved=3, min_stock_level=5)
    command = make(ReserveStock, reservation_id="order-7", quantity=4)
    first = applied(decide(state, None, command, NOW))
    again = applied(decide(state, None, command, LATER))
    ids = [e.event_id for e in first.events]
    assert kinds(first.events) == [ReservationMade, StockChanged, LowStockDetected]
    assert ids == [e.event_id for e in again.events]
    assert len(set(ids)) == len(ids)
    assert all(e.command_id == command.command_id and e.sku == SKU for e in first.events)
    other = make(ReserveStock, reservation_id="order-7", quantity=4)
    assert not set(ids) & {e.event_id for e in applied(decide(state, None, other, NOW)).events}


def test_rejection_event_id_is_deterministic() -> None:
    command = make(ReceiveStock, quantity=1)
    first = rejected(decide(None, None, command, NOW), "unknown_sku")
    again = rejected(decide(None, None, command, LATER), "unknown_sku")
    assert first.event.event_id == again.event.event_id
    assert first.event.command_id == command.command_id
    other = rejected(decide(None, None, make(ReceiveStock, quantity=1), NOW), "unknown_sku")
    assert other.event.event_id != first.event.event_id


def test_versions_increment_by_one_per_applied_command() -> None:
    commands: list[StockCommand] = [
        make(RegisterItem, name="Mug", initial_quantity=5, min_stock_level=2),
        make(ReceiveStock, quantity=10),
        make(ReserveStock, reservation_id="order-1", quantity=4, expires_at=LATER),
        make(UpdateItemDetails, max_stock_level=100),
        make(DeactivateItem),
        make(ReceiveStock, quantity=1),  # rejected: inactive
        make(ReactivateItem),
        make(AdjustStock, delta=-2, reason_code="damage"),
        make(CountStock, counted_quantity=6),
        make(ExpireReservation, reservation_id="order-1"),  # rejected: not expired
        make(FulfilReservation, reservation_id="order-1"),
    ]
    state: ItemState | None = None
    held: Reservation | None = None
    versions: list[int] = []
    for command in commands:
        outcome = decide(state, held, command, NOW)
        if isinstance(outcome, Applied):
            state = outcome.state
            held = outcome.reservation or held
            versions.append(state.version)
    assert versions == list(range(1, 10))
    assert state is not None
    assert (state.on_hand, state.reserved) == (2, 0)


@pytest.mark.parametrize(
    ("state", "held", "command"),
    [
        (item(is_active=False), None, make(ReceiveStock, quantity=1)),
        (item(on_hand=2), None, make(AdjustStock, delta=-3, reason_code="loss")),
        (item(version=2), None, make(CountStock, counted_quantity=1, expected_version=1)),
        (item(reserved=3), reservation(3, "released"), make(ReleaseReservation, reservation_id="order-1")),
        (item(reserved=3), reservation(3), make(ReserveStock, reservation_id="order-1", quantity=1)),
        (item(min_stock_level=5), None, make(UpdateItemDetails, max_stock_level=1)),
    ],
    ids=["inactive", "insufficient", "version", "closed", "exists", "invalid"],
)
def test_a_rejection_leaves_state_and_reservation_untouched(
    state: ItemState, held: Reservation | None, command: StockCommand
) -> None:
    state_before, held_before = state._replace(), held and held._replace()
    outcome = decide(state, held, command, NOW)
    assert isinstance(outcome, Rejected)
    assert (state, held) == (state_before, held_before)
    assert isinstance(outcome.event, CommandRejected)
    assert (outcome.event.code, outcome.event.command_type) == (outcome.code, command.type)
    assert not hasattr(outcome, "state")


def test_out_of_stock_then_receive_is_back_in_stock() -> None:
    out = applied(
        decide(
            item(on_hand=1, min_stock_level=5, alert_state="low"),
            None,
            make(AdjustStock, delta=-1, reason_code="loss"),
            NOW,
        )
    )
    assert kinds(out.events) == [StockChanged, OutOfStock]
    back = applied(decide(out.state, None, make(ReceiveStock, quantity=20), NOW))
    assert kinds(back.events) == [StockChanged, BackInStock]
    assert back.state.alert_state == "ok"


def test_the_policy_margin_is_used() -> None:
    state = item(on_hand=5, min_stock_level=10, alert_state="low")
    receive = make(ReceiveStock, quantity=6)  # available 11: inside a 10% margin, past a 0% one
    assert applied(decide(state, None, receive, NOW, AlertPolicy(10))).state.alert_state == "low"
    zero = applied(decide(state, None, receive, NOW, AlertPolicy(0)))
    assert (zero.state.alert_state, kinds(zero.events)) == ("ok", [StockChanged, StockLevelNormal])


# === stateful model test ===========================================================================
#
# The worker (workers.stock_worker.apply) keys reservations by (sku, reservation_id) and hands `decide`
# the one the command names; this machine does the same.

SKUS = ("SKU-A", "SKU-B")
RESERVATION_IDS = ("r1", "r2", "r3", "r4", "r5", "r6")
POLICY = AlertPolicy(clear_margin_pct=25)
START = datetime(2026, 1, 1, tzinfo=UTC)
CLOSED_STATUS: dict[str, ReservationStatus] = {
    "release_reservation": "released",
    "fulfil_reservation": "fulfilled",
    "expire_reservation": "expired",
}
SKU_CHOICE = st.sampled_from([SKUS[0], SKUS[0], SKUS[0], SKUS[1]])  # mostly the item registered first
OTHER_SKU_CHOICE = st.sampled_from([None, None, None, None, SKUS[0], SKUS[1]])
VERSION_OFFSETS = st.sampled_from([None, None, None, None, None, 0, 0, -1, 1])
# Expiries and clock ticks move in steps of 10 s so that "now == expires_at" happens often.
EXPIRES_IN = st.integers(-3, 6).map(lambda n: None if n < -1 else n * 10)
TICKS = st.sampled_from([10, 10, 10, 20, 60])
ALERT_EVENTS = (LowStockDetected, OutOfStock, BackInStock, OverstockDetected, StockLevelNormal)

Key = tuple[str, str]  # (sku, reservation_id)


@dataclass
class ModelItem:
    on_hand: int
    min_level: int
    max_level: int | None
    trackable: bool
    active: bool = True
    version: int = 1
    alert: AlertState = "ok"


@dataclass
class ModelReservation:
    quantity: int
    status: ReservationStatus
    expires_at: datetime | None


class StockMachine(RuleBasedStateMachine):
    """Random commands through `decide`, checked against plain ints and a dict of reservations."""

    reservation_keys: Bundle[Key] = Bundle("reservation_keys")

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.next_id = 0
        # what the rules return, kept as the worker keeps it
        self.states: dict[str, ItemState] = {}
        self.reservations: dict[Key, Reservation] = {}
        self.ledger_delta: dict[str, int] = dict.fromkeys(SKUS, 0)
        self.ledger_reserved: dict[str, int] = dict.fromkeys(SKUS, 0)
        # the oracle
        self.items: dict[str, ModelItem] = {}
        self.held: dict[Key, ModelReservation] = {}

    # --- helpers -----------------------------------------------------------------------------------

    def envelope(self, sku: str, version_offset: int | None = None) -> dict[str, Any]:
        self.next_id += 1
        expected = None
        if version_offset is not None:
            base = self.items[sku].version if sku in self.items else 1
            expected = max(base + version_offset, 0)
        return {
            "command_id": uuid.UUID(int=self.next_id),
            "sku": sku,
            "issued_at": self.now,
            "actor": "machine",
            "source": "hypothesis",
            "expected_version": expected,
        }

    def reserved(self, sku: str) -> int:
        return sum(r.quantity for (s, _), r in self.held.items() if s == sku and r.status == "active")

    def gate(self, command: StockCommand, *, needs_active: bool) -> RejectionCode | None:
        """The checks every command on an existing item goes through, in the rules' documented order."""
        model = self.items.get(command.sku)
        if model is None:
            return "unknown_sku"
        if command.expected_version is not None and command.expected_version != model.version:
            return "version_mismatch"
        if needs_active and not model.active:
            return "inactive_item"
        return None

    def feed(self, command: StockCommand, expected: RejectionCode | None, change: Callable[[], None]) -> None:
        """Run `command` through the rules; `expected` is the oracle's verdict, `change` its effect."""
        sku = command.sku
        key = (sku, command.reservation_id) if isinstance(command, ReservationCommand) else None
        outcome = decide(
            self.states.get(sku), self.reservations.get(key) if key else None, command, self.now, POLICY
        )
        record_event(f"{command.type}: {expected or 'applied'}")  # see --hypothesis-show-statistics
        if expected is not None:
            assert isinstance(outcome, Rejected), f"expected {expected}, got {outcome}"
            assert outcome.code == expected, outcome.reason
            assert outcome.event.command_id == command.command_id
            return
        assert isinstance(outcome, Applied), f"expected applied, got {outcome}"
        model_before = self.items.get(sku)
        alert_before = model_before.alert if model_before else None
        change()
        model = self.items[sku]
        model.version = 1 if model_before is None else model.version + 1
        model.alert = classify(
            alert_before or "ok",
            model.on_hand - self.reserved(sku),
            model.min_level,
            model.max_level,
            trackable=model.trackable,
            policy=POLICY,
        )
        self.states[sku] = outcome.state
        if outcome.reservation is not None:
            assert key is not None
            assert key == (outcome.reservation.sku, outcome.reservation.reservation_id)
            self.reservations[key] = outcome.reservation
        for row in ledger_rows(command, outcome.events, self.now):
            self.ledger_delta[sku] += row.delta
            self.ledger_reserved[sku] += row.reserved_delta
        ids = [e.event_id for e in outcome.events]
        assert len(set(ids)) == len(ids)
        assert all(e.command_id == command.command_id and e.sku == sku for e in outcome.events)
        alert_events = [e for e in sku_level(outcome.events) if isinstance(e, ALERT_EVENTS)]
        # Registering is a transition from "no alert": previous "ok".
        previous = alert_before or "ok"
        if previous == model.alert:
            assert alert_events == []
        else:
            [event] = alert_events
            assert type(event) is transition_event_type(previous, model.alert)
            assert (event.previous, event.current) == (previous, model.alert)
            assert event.available == model.on_hand - self.reserved(sku)

    # --- rules -------------------------------------------------------------------------------------

    @initialize(
        initial=st.integers(0, 30),
        min_level=st.integers(0, 10),
        headroom=st.none() | st.integers(0, 20),
        trackable=st.booleans(),
    )
    def register_first(self, initial: int, min_level: int, headroom: int | None, trackable: bool) -> None:
        self.register(SKUS[0], initial, min_level, headroom, trackable)

    @rule(
        sku=SKU_CHOICE,
        initial=st.integers(0, 30),
        min_level=st.integers(0, 10),
        headroom=st.none() | st.integers(0, 20),
        trackable=st.booleans(),
    )
    def register(self, sku: str, initial: int, min_level: int, headroom: int | None, trackable: bool) -> None:
        max_level = None if headroom is None else min_level + headroom
        command = RegisterItem.model_validate(
            {
                **self.envelope(sku),
                "name": "Item",
                "initial_quantity": initial,
                "min_stock_level": min_level,
                "max_stock_level": max_level,
                "is_trackable": trackable,
            }
        )

        def change() -> None:
            self.items[sku] = ModelItem(initial, min_level, max_level, trackable)

        self.feed(command, "already_exists" if sku in self.items else None, change)

    @rule(
        sku=SKU_CHOICE,
        min_level=st.none() | st.integers(0, 12),
        max_level=st.sampled_from(["keep", "clear"]) | st.integers(0, 30),
        trackable=st.none() | st.booleans(),
        offset=VERSION_OFFSETS,
    )
    def update_levels(
        self,
        sku: str,
        min_level: int | None,
        max_level: str | int,
        trackable: bool | None,
        offset: int | None,
    ) -> None:
        fields: dict[str, Any] = {}
        if min_level is not None:
            fields["min_stock_level"] = min_level
        if max_level != "keep":
            fields["max_stock_level"] = None if max_level == "clear" else max_level
        if trackable is not None:
            fields["is_trackable"] = trackable
        if not fields:
            fields["name"] = "Renamed"
        command = UpdateItemDetails.model_validate({**self.envelope(sku, offset), **fields})
        code = self.gate(command, needs_active=False)
        model = self.items.get(sku)
        new_min = min_level if min_level is not None else model.min_level if model else 0
        new_max = fields.get("max_stock_level", model.max_level if model else None)
        if code is None and new_max is not None and new_max < new_min:
            code = "invalid_state"

        def change() -> None:
            assert model is not None
            model.min_level, model.max_level = new_min, new_max
            model.trackable = model.trackable if trackable is None else trackable

        self.feed(command, code, change)

    @rule(sku=SKU_CHOICE, active=st.booleans(), offset=VERSION_OFFSETS)
    def set_active(self, sku: str, active: bool, offset: int | None) -> None:
        cls = ReactivateItem if active else DeactivateItem
        command = cls.model_validate(self.envelope(sku, offset))
        code = self.gate(command, needs_active=False)
        if code is None and self.items[sku].active == active:
            code = "invalid_state"

        def change() -> None:
            self.items[sku].active = active

        self.feed(command, code, change)

    @rule(sku=SKU_CHOICE, quantity=st.integers(1, 20), offset=VERSION_OFFSETS)
    def receive(self, sku: str, quantity: int, offset: int | None) -> None:
        command = ReceiveStock.model_validate({**self.envelope(sku, offset), "quantity": quantity})

        def change() -> None:
            self.items[sku].on_hand += quantity

        self.feed(command, self.gate(command, needs_active=True), change)

    @rule(
        sku=SKU_CHOICE,
        delta=st.integers(-20, 19).map(lambda d: d if d < 0 else d + 1),
        reason=st.sampled_from(["damage", "loss", "found", "correction"]),
        offset=VERSION_OFFSETS,
    )
    def adjust(self, sku: str, delta: int, reason: str, offset: int | None) -> None:
        command = AdjustStock.model_validate(
            {**self.envelope(sku, offset), "delta": delta, "reason_code": reason}
        )
        code = self.gate(command, needs_active=True)
        if code is None and self.items[sku].on_hand + delta < self.reserved(sku):
            code = "insufficient_stock"

        def change() -> None:
            self.items[sku].on_hand += delta

        self.feed(command, code, change)

    @rule(sku=SKU_CHOICE, counted=st.integers(0, 40), offset=VERSION_OFFSETS)
    def count(self, sku: str, counted: int, offset: int | None) -> None:
        command = CountStock.model_validate({**self.envelope(sku, offset), "counted_quantity": counted})
        code = self.gate(command, needs_active=True)
        if code is None and counted < self.reserved(sku):
            code = "insufficient_stock"

        def change() -> None:
            self.items[sku].on_hand = counted

        self.feed(command, code, change)

    @rule(
        target=reservation_keys,
        sku=SKU_CHOICE,
        rid=st.sampled_from(RESERVATION_IDS),
        quantity=st.integers(1, 8),
        expires_in=EXPIRES_IN,
        offset=VERSION_OFFSETS,
    )
    def reserve(
        self, sku: str, rid: str, quantity: int, expires_in: int | None, offset: int | None
    ) -> MultipleResults[Key]:
        expires_at = None if expires_in is None else self.now + timedelta(seconds=expires_in)
        fields = {"reservation_id": rid, "quantity": quantity, "expires_at": expires_at}
        command = ReserveStock.model_validate({**self.envelope(sku, offset), **fields})
        code = self.gate(command, needs_active=True)
        if code is None:
            if (sku, rid) in self.held:
                code = "reservation_exists"
            elif expires_at is not None and expires_at <= self.now:
                code = "invalid_state"
            elif quantity > self.items[sku].on_hand - self.reserved(sku):
                code = "insufficient_stock"

        def change() -> None:
            self.held[sku, rid] = ModelReservation(quantity, "active", expires_at)

        self.feed(command, code, change)
        # Later closes pick from the reservations that exist (a close on another SKU covers unknown ids).
        return multiple((sku, rid)) if (sku, rid) in self.held else multiple()

    @rule(key=reservation_keys, other_sku=OTHER_SKU_CHOICE, offset=VERSION_OFFSETS)
    def release(self, key: Key, other_sku: str | None, offset: int | None) -> None:
        self.close("release_reservation", key, other_sku, offset)

    @rule(key=reservation_keys, other_sku=OTHER_SKU_CHOICE, offset=VERSION_OFFSETS)
    def fulfil(self, key: Key, other_sku: str | None, offset: int | None) -> None:
        self.close("fulfil_reservation", key, other_sku, offset)

    @rule(key=reservation_keys, other_sku=OTHER_SKU_CHOICE, offset=VERSION_OFFSETS)
    def expire(self, key: Key, other_sku: str | None, offset: int | None) -> None:
        self.close("expire_reservation", key, other_sku, offset)

    def close(self, kind: str, key: Key, other_sku: str | None, offset: int | None) -> None:
        """Close a reservation id seen in a reserve command, on its own SKU or on `other_sku`."""
        sku, rid = other_sku or key[0], key[1]
        command = CLOSERS[kind].model_validate({**self.envelope(sku, offset), "reservation_id": rid})
        code = self.gate(command, needs_active=False)
        held = self.held.get((sku, rid))
        if code is None:
            if held is None:
                code = "unknown_reservation"
            elif held.status != "active":
                code = "reservation_closed"
            elif kind == "expire_reservation" and (held.expires_at is None or self.now < held.expires_at):
                code = "not_expired"

        def change() -> None:
            assert held is not None
            if kind == "fulfil_reservation":
                self.items[sku].on_hand -= held.quantity
            held.status = CLOSED_STATUS[kind]

        self.feed(command, code, change)

    @rule(seconds=TICKS)
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    # --- invariants --------------------------------------------------------------------------------

    @invariant()
    def items_match_the_model(self) -> None:
        assert self.states.keys() == self.items.keys()
        for sku, state in self.states.items():
            model = self.items[sku]
            assert state.on_hand >= 0
            assert state.reserved >= 0
            assert state.available >= 0
            active = [r for (s, _), r in self.reservations.items() if s == sku and r.status == "active"]
            assert state.reserved == sum(r.quantity for r in active)
            levels = (state.on_hand, state.reserved, state.min_stock_level, state.max_stock_level)
            assert levels == (model.on_hand, self.reserved(sku), model.min_level, model.max_level)
            flags = (state.is_active, state.is_trackable, state.version)
            assert flags == (model.active, model.trackable, model.version)
            assert state.alert_state == model.alert

    @invariant()
    def reservations_match_the_model(self) -> None:
        assert self.reservations.keys() == self.held.keys()
        for key, got in self.reservations.items():
            want = self.held[key]
            assert (got.quantity, got.status, got.expires_at) == (want.quantity, want.status, want.expires_at)

    @invariant()
    def ledger_sums_to_stock(self) -> None:
        for sku in SKUS:
            state = self.states.get(sku)
            assert self.ledger_delta[sku] == (state.on_hand if state else 0)
            assert self.ledger_reserved[sku] == (state.reserved if state else 0)


StockMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
TestStockMachine = StockMachine.TestCase


def test_with_stock_is_replace_with_the_next_version() -> None:
    """`with_stock` spells every field out for speed; a field added to ItemState must not be dropped."""
    state = ItemState(
        sku="S-1", name="n", on_hand=10, reserved=2, description="d", category="c", min_stock_level=3,
        max_stock_level=50, cost_price=Decimal("1.5"), weight_grams=7, dimensions="1x2x3", is_active=False,
        is_trackable=False, alert_state="low", version=9,
    )  # fmt: skip
    stock = {"WH-1": LocationStock(5, 1)}
    assert state.with_stock(11, 4, stock) == state._replace(on_hand=11, reserved=4, version=10, stock=stock)


@given(st.uuids(), st.integers(min_value=0, max_value=10_000))
def test_event_id_is_uuid5(command_id: uuid.UUID, index: int) -> None:
    made = event_id(command_id.bytes, index)
    expected = uuid.uuid5(command_id, str(index))
    assert made == expected
    assert (made.version, made.variant, str(made), hash(made)) == (
        expected.version, expected.variant, str(expected), hash(expected)
    )  # fmt: skip


def test_every_stock_command_has_a_rule() -> None:
    """The rules dispatch on the command's class: a command added to the union needs its rule."""
    from typing import get_args

    from contracts.stock_commands import StockCommand as Annotated_
    from workers.rules.stock import _BY_TYPE

    union = get_args(get_args(Annotated_)[0])  # Annotated[A | B | ..., discriminator]
    assert RegisterItem in union
    assert set(union) - {RegisterItem} == set(_BY_TYPE)
