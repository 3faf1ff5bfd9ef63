"""What a stock command does to one item (and the one reservation it names)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

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
    ReserveStock,
    StockCommand,
    UpdateItemDetails,
)
from contracts.stock_events import (
    AlertState,
    ItemDeactivated,
    ItemDetailsUpdated,
    ItemReactivated,
    ItemRegistered,
    ReservationExpired,
    ReservationFulfilled,
    ReservationMade,
    ReservationReleased,
    StockChanged,
    StockEvent,
)
from workers.rules.alerts import AlertPolicy, classify, transition_event_type
from workers.rules.ids import event_id
from workers.rules.rejection import Reject, Rejected, rejected

ReservationStatus = Literal["active", "released", "fulfilled", "expired"]


@dataclass(frozen=True, slots=True)
class ItemState:
    sku: str
    name: str
    on_hand: int
    reserved: int = 0
    description: str | None = None
    category: str | None = None
    min_stock_level: int = 0
    max_stock_level: int | None = None
    cost_price: Decimal | None = None
    weight_grams: int | None = None
    dimensions: str | None = None
    is_active: bool = True
    is_trackable: bool = True
    alert_state: AlertState = "ok"
    version: int = 1

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def with_stock(self, on_hand: int, reserved: int) -> ItemState:
        """The next version with new stock levels: `replace()` without its cost, for every stock move."""
        return ItemState(
            self.sku, self.name, on_hand, reserved, self.description, self.category, self.min_stock_level,
            self.max_stock_level, self.cost_price, self.weight_grams, self.dimensions, self.is_active,
            self.is_trackable, self.alert_state, self.version + 1,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    sku: str
    quantity: int
    status: ReservationStatus
    expires_at: datetime | None = None
    command_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    state: ItemState
    events: tuple[StockEvent, ...]
    reservation: Reservation | None = None


Outcome = Applied | Rejected


@dataclass(slots=True)
class _Events:
    """Builds a command's events with ids derived from the command id, so a replay yields the same ids."""

    command: StockCommand
    now: datetime
    items: list[StockEvent] = field(default_factory=list)
    namespace: bytes = b""

    def __post_init__(self) -> None:
        self.namespace = self.command.command_id.bytes

    def add(self, kind: type[StockEvent], **fields: Any) -> None:
        command = self.command
        # Every value here comes from a validated command or state, so the model is built without
        # validating it again (`trusted`): on the hot path that is most of the cost of an event.
        self.items.append(
            kind.trusted(
                event_id=event_id(self.namespace, len(self.items)),
                sku=command.sku,
                occurred_at=self.now,
                command_id=command.command_id,
                **fields,
            )
        )


def decide(
    state: ItemState | None,
    reservation: Reservation | None,
    command: StockCommand,
    now: datetime,
    policy: AlertPolicy | None = None,
) -> Outcome:
    """Apply `command` to `state` (None: unknown SKU) and, for reservation commands, `reservation`
    (None: unknown id). Never raises for a business reason: a rejection carries its reason."""
    events = _Events(command, now)
    try:
        new_state, new_reservation = _apply(state, reservation, command, now, events)
    except Reject as rejection:
        return rejected(command, now, rejection)
    if state is not None:
        new_state = _alerts(state, new_state, events, policy or AlertPolicy())
    return Applied(new_state, tuple(events.items), new_reservation)


def _apply(
    state: ItemState | None,
    reservation: Reservation | None,
    command: StockCommand,
    now: datetime,
    events: _Events,
) -> tuple[ItemState, Reservation | None]:
    if isinstance(command, RegisterItem):
        if state is not None:
            raise Reject("already_exists", f"item {command.sku} is already registered")
        if command.expected_version not in (None, 0):
            raise Reject(
                "version_mismatch", f"expected version {command.expected_version}, item does not exist"
            )
        return _register(command, events), None
    if state is None:
        raise Reject("unknown_sku", f"item {command.sku} is not registered")
    if command.expected_version is not None and command.expected_version != state.version:
        raise Reject(
            "version_mismatch", f"expected version {command.expected_version}, item is at {state.version}"
        )
    match command:
        case UpdateItemDetails():
            return _update(state, command, events), None
        case DeactivateItem() | ReactivateItem():
            return _set_active(state, command, events), None
        case ReceiveStock():
            _require_active(state)
            return _move(state, events, command.quantity, 0, "receive_stock"), None
        case AdjustStock():
            _require_active(state)
            _require_on_hand(state, state.on_hand + command.delta, f"adjusting by {command.delta}")
            return _move(state, events, command.delta, 0, command.reason_code), None
        case CountStock():
            _require_active(state)
            _require_on_hand(state, command.counted_quantity, f"a count of {command.counted_quantity}")
            return _move(state, events, command.counted_quantity - state.on_hand, 0, "count_stock"), None
        case ReserveStock():
            return _reserve(state, reservation, command, now, events)
        case ReleaseReservation() | FulfilReservation() | ExpireReservation():
            return _close(state, reservation, command, now, events)
    raise AssertionError(f"unhandled command {command.type}")  # the union is exhaustive


def _register(command: RegisterItem, events: _Events) -> ItemState:
    state = ItemState(
        sku=command.sku,
        name=command.name,
        description=command.description,
        category=command.category,
        on_hand=command.initial_quantity,
        min_stock_level=command.min_stock_level,
        max_stock_level=command.max_stock_level,
        cost_price=command.cost_price,
        weight_grams=command.weight_grams,
        dimensions=command.dimensions,
        is_trackable=command.is_trackable,
    )
    events.add(
        ItemRegistered,
        name=state.name,
        category=state.category,
        on_hand=state.on_hand,
        min_stock_level=state.min_stock_level,
        max_stock_level=state.max_stock_level,
        cost_price=state.cost_price,
        version=state.version,
    )
    # Registration is a transition from "no alert" (`previous` = "ok"): an item registered already low,
    # out or over stock is announced like one that got there later, so webhooks and dashboards hear of it.
    # The policy's margin cannot matter here: it only holds a state the item was already in.
    return _alerts(replace(state, alert_state="ok"), state, events, AlertPolicy())


def _update(state: ItemState, command: UpdateItemDetails, events: _Events) -> ItemState:
    changes = command.changes()
    new = replace(state, **changes, version=state.version + 1)
    if new.max_stock_level is not None and new.max_stock_level < new.min_stock_level:
        raise Reject("invalid_state", "max_stock_level would fall below min_stock_level")
    shown = {k: str(v) if isinstance(v, Decimal) else v for k, v in changes.items()}
    events.add(ItemDetailsUpdated, changes=shown, version=new.version)
    return new


def _set_active(state: ItemState, command: DeactivateItem | ReactivateItem, events: _Events) -> ItemState:
    active = isinstance(command, ReactivateItem)
    if state.is_active == active:
        raise Reject("invalid_state", f"item {state.sku} is already {'active' if active else 'inactive'}")
    new = replace(state, is_active=active, version=state.version + 1)
    events.add(ItemReactivated if active else ItemDeactivated, reason=command.reason, version=new.version)
    return new


def _require_active(state: ItemState) -> None:
    if not state.is_active:
        raise Reject("inactive_item", f"item {state.sku} is deactivated")


def _require_on_hand(state: ItemState, on_hand: int, what: str) -> None:
    if on_hand < state.reserved:
        raise Reject(
            "insufficient_stock", f"{what} would leave on-hand {on_hand} below reserved {state.reserved}"
        )


def _move(state: ItemState, events: _Events, delta: int, reserved_delta: int, reason: str) -> ItemState:
    new = state.with_stock(state.on_hand + delta, state.reserved + reserved_delta)
    events.add(
        StockChanged,
        delta=delta,
        reserved_delta=reserved_delta,
        reason=reason,
        on_hand=new.on_hand,
        reserved=new.reserved,
        available=new.available,
        version=new.version,
    )
    return new


def _reserve(
    state: ItemState, existing: Reservation | None, command: ReserveStock, now: datetime, events: _Events
) -> tuple[ItemState, Reservation]:
    _require_active(state)
    if existing is not None:
        raise Reject("reservation_exists", f"reservation {command.reservation_id} already exists")
    if command.expires_at is not None and command.expires_at <= now:
        raise Reject("invalid_state", "expires_at is not in the future")
    if command.quantity > state.available:
        raise Reject(
            "insufficient_stock", f"cannot reserve {command.quantity}: only {state.available} available"
        )
    reservation = Reservation(
        command.reservation_id, state.sku, command.quantity, "active", command.expires_at, command.command_id
    )
    events.add(
        ReservationMade,
        reservation_id=reservation.reservation_id,
        quantity=reservation.quantity,
        expires_at=reservation.expires_at,
    )
    return _move(state, events, 0, command.quantity, "reserve_stock"), reservation


_CLOSING: dict[str, tuple[ReservationStatus, type[StockEvent]]] = {
    "release_reservation": ("released", ReservationReleased),
    "fulfil_reservation": ("fulfilled", ReservationFulfilled),
    "expire_reservation": ("expired", ReservationExpired),
}


def _close(
    state: ItemState,
    reservation: Reservation | None,
    command: ReleaseReservation | FulfilReservation | ExpireReservation,
    now: datetime,
    events: _Events,
) -> tuple[ItemState, Reservation]:
    if reservation is None or reservation.sku != state.sku:
        raise Reject("unknown_reservation", f"no reservation {command.reservation_id} for {state.sku}")
    if reservation.status != "active":
        raise Reject(
            "reservation_closed", f"reservation {reservation.reservation_id} is {reservation.status}"
        )
    # The scheduler stamps issued_at with the database clock that found the reservation due.
    due_by = max(now, min(command.issued_at, now + timedelta(seconds=5)))  # trusted within clock skew
    if isinstance(command, ExpireReservation) and (
        reservation.expires_at is None or due_by < reservation.expires_at
    ):
        raise Reject("not_expired", f"reservation {reservation.reservation_id} has not expired")
    status, event_type = _CLOSING[command.type]
    closed = replace(reservation, status=status)
    events.add(event_type, reservation_id=closed.reservation_id, quantity=closed.quantity)
    shipped = -closed.quantity if isinstance(command, FulfilReservation) else 0
    return _move(state, events, shipped, -closed.quantity, command.type), closed


def _classify(state: ItemState, current: AlertState, policy: AlertPolicy) -> AlertState:
    return classify(
        current,
        state.available,
        state.min_stock_level,
        state.max_stock_level,
        trackable=state.is_trackable,
        policy=policy,
    )


def _alerts(before: ItemState, after: ItemState, events: _Events, policy: AlertPolicy) -> ItemState:
    current = _classify(after, before.alert_state, policy)
    event_type = transition_event_type(before.alert_state, current)
    if event_type is None:
        return after
    events.add(
        event_type,
        previous=before.alert_state,
        current=current,
        available=after.available,
        min_stock_level=after.min_stock_level,
        max_stock_level=after.max_stock_level,
    )
    return replace(after, alert_state=current)
