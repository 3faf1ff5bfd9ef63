"""What a stock command does to one item (and the one reservation it names)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

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
    ReserveStock,
    SetLocationLevels,
    StockCommand,
    TransferStock,
    UpdateItemDetails,
)
from contracts.stock_events import (
    AlertState,
    ItemDeactivated,
    ItemDetailsUpdated,
    ItemReactivated,
    ItemRegistered,
    LocationLevelsSet,
    ReservationExpired,
    ReservationFulfilled,
    ReservationMade,
    ReservationReleased,
    StockChanged,
    StockEvent,
    StockTransferred,
)
from workers.rules.alerts import AlertPolicy, classify, transition_event_type
from workers.rules.ids import event_id
from workers.rules.rejection import Reject, Rejected, rejected

ReservationStatus = Literal["active", "released", "fulfilled", "expired"]


class LocationStock(NamedTuple):
    """An item's stock at one location. None levels follow the item's. A tuple, not a frozen dataclass:
    one is built per stock move, at a third of the cost."""

    on_hand: int = 0
    reserved: int = 0
    min_stock_level: int | None = None
    max_stock_level: int | None = None
    alert_state: AlertState = "ok"

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def moved(self, delta: int, reserved_delta: int) -> LocationStock:
        return LocationStock(
            self.on_hand + delta, self.reserved + reserved_delta, self.min_stock_level, self.max_stock_level,
            self.alert_state,
        )  # fmt: skip


NOWHERE = LocationStock()  # a location the item has no row at yet: nothing there, the item's levels


class ItemState(NamedTuple):
    """An item as the rules see it. A tuple, like LocationStock, not a frozen dataclass: one is built per
    stock move and per item a batch loads, at a fifth of the cost (a frozen dataclass sets each of its 16
    fields through object.__setattr__)."""

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
    # The item's stock at the locations loaded for this command (those it touches); the totals above are
    # the sums over every location, loaded or not. Never changed in place: a move builds a new mapping.
    stock: Mapping[str, LocationStock] = MappingProxyType({})

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def at(self, location: str) -> LocationStock:
        return self.stock.get(location, NOWHERE)

    def with_stock(self, on_hand: int, reserved: int, stock: Mapping[str, LocationStock]) -> ItemState:
        """The next version with new stock levels: `_replace()` without its cost, for every stock move."""
        return ItemState(
            self.sku, self.name, on_hand, reserved, self.description, self.category, self.min_stock_level,
            self.max_stock_level, self.cost_price, self.weight_grams, self.dimensions, self.is_active,
            self.is_trackable, self.alert_state, self.version + 1, stock,
        )  # fmt: skip

    def levels_at(self, here: LocationStock) -> tuple[int, int | None]:
        """A location's effective (min, max): its own, else the item's."""
        low = self.min_stock_level if here.min_stock_level is None else here.min_stock_level
        return low, self.max_stock_level if here.max_stock_level is None else here.max_stock_level


class Reservation(NamedTuple):
    """A reservation as the rules see it (a tuple for the cost of building one, as ItemState)."""

    reservation_id: str
    sku: str
    quantity: int
    status: ReservationStatus
    expires_at: datetime | None = None
    command_id: uuid.UUID | None = None
    location: str = DEFAULT_LOCATION


class Applied(NamedTuple):
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
        fields["event_id"] = event_id(self.namespace, len(self.items))
        fields["sku"] = command.sku
        fields["occurred_at"] = self.now
        fields["command_id"] = command.command_id
        # Every value here comes from a validated command or state, so the model is built without
        # validating it again (`trusted_from`, which takes this dict as it is): on the hot path that is
        # most of the cost of an event.
        self.items.append(kind.trusted_from(fields))


Locations = Mapping[str, bool]
"""Whether each location code a batch names is active; a code missing is unknown. 'default' is always
known and active, whether listed or not."""
_NO_LOCATIONS: Locations = {}  # shared and never written: no dict is built per command


def decide(
    state: ItemState | None,
    reservation: Reservation | None,
    command: StockCommand,
    now: datetime,
    policy: AlertPolicy | None = None,
    locations: Locations | None = None,
) -> Outcome:
    """Apply `command` to `state` (None: unknown SKU) and, for reservation commands, `reservation`
    (None: unknown id). `state.stock` must hold every location the command touches that has stock (the
    reservation's, for closing commands; every one for UpdateItemDetails, whose levels they may follow).
    Never raises for a business reason: a rejection carries its reason."""
    events = _Events(command, now)
    try:
        new_state, new_reservation = _apply(
            state, reservation, command, now, events, _NO_LOCATIONS if locations is None else locations
        )
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
    locations: Locations,
) -> tuple[ItemState, Reservation | None]:
    if type(command) is RegisterItem:  # not isinstance: a miss walks the class's bases
        _require_location(locations, command.location)
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
    return _BY_TYPE[type(command)](state, reservation, command, now, events, locations)


# Each command's rule, by the command's class: one dict look-up, where a `match` on classes tried them in
# turn (~0.2 us per class that did not match; a bench command passed four to eight of them).
_Rule = Callable[
    [ItemState, Reservation | None, Any, datetime, _Events, Locations], tuple[ItemState, Reservation | None]
]


def _receive(
    state: ItemState,
    _: Reservation | None,
    command: ReceiveStock,
    __: datetime,
    events: _Events,
    locations: Locations,
) -> tuple[ItemState, Reservation | None]:
    _require_active(state)
    where = _require_location(locations, command.location)
    return _move(state, events, command.quantity, 0, "receive_stock", where), None


def _adjust(
    state: ItemState,
    _: Reservation | None,
    command: AdjustStock,
    __: datetime,
    events: _Events,
    locations: Locations,
) -> tuple[ItemState, Reservation | None]:
    _require_active(state)
    where = _require_location(locations, command.location)
    here = state.at(where)
    _require_on_hand(here, here.on_hand + command.delta, f"adjusting by {command.delta}", where)
    return _move(state, events, command.delta, 0, command.reason_code, where), None


def _count(
    state: ItemState,
    _: Reservation | None,
    command: CountStock,
    __: datetime,
    events: _Events,
    locations: Locations,
) -> tuple[ItemState, Reservation | None]:
    _require_active(state)
    where = _require_location(locations, command.location)
    here = state.at(where)
    counted = command.counted_quantity
    _require_on_hand(here, counted, f"a count of {counted}", where)
    return _move(state, events, counted - here.on_hand, 0, "count_stock", where), None


def _require_location(locations: Locations, code: str | None, *, receiving: bool = True) -> str:
    """The command's location (None: the default), known and, where stock goes to it, active."""
    if code is None or code == DEFAULT_LOCATION:
        return DEFAULT_LOCATION
    active = locations.get(code)
    if active is None:
        raise Reject("unknown_location", f"location {code} does not exist")
    if receiving and not active:
        raise Reject("inactive_location", f"location {code} is inactive")
    return code


def _register(command: RegisterItem, events: _Events) -> ItemState:
    where = command.location or DEFAULT_LOCATION
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
        stock={where: LocationStock(command.initial_quantity)},
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
    return _alerts(state._replace(alert_state="ok", stock={}), state, events, AlertPolicy())


def _update(
    state: ItemState,
    _: Reservation | None,
    command: UpdateItemDetails,
    __: datetime,
    events: _Events,
    ___: Locations,
) -> tuple[ItemState, Reservation | None]:
    changes = command.changes()
    new = state._replace(**changes, version=state.version + 1)
    if new.max_stock_level is not None and new.max_stock_level < new.min_stock_level:
        raise Reject("invalid_state", "max_stock_level would fall below min_stock_level")
    shown = {k: str(v) if isinstance(v, Decimal) else v for k, v in changes.items()}
    events.add(ItemDetailsUpdated, changes=shown, version=new.version)
    return new, None


def _set_active(
    state: ItemState,
    _: Reservation | None,
    command: DeactivateItem | ReactivateItem,
    __: datetime,
    events: _Events,
    ___: Locations,
) -> tuple[ItemState, Reservation | None]:
    active = isinstance(command, ReactivateItem)
    if state.is_active == active:
        raise Reject("invalid_state", f"item {state.sku} is already {'active' if active else 'inactive'}")
    new = state._replace(is_active=active, version=state.version + 1)
    events.add(ItemReactivated if active else ItemDeactivated, reason=command.reason, version=new.version)
    return new, None


def _require_active(state: ItemState) -> None:
    if not state.is_active:
        raise Reject("inactive_item", f"item {state.sku} is deactivated")


def _require_on_hand(here: LocationStock, on_hand: int, what: str, where: str) -> None:
    if on_hand < here.reserved:
        raise Reject(
            "insufficient_stock",
            f"{what} would leave on-hand {on_hand} below reserved {here.reserved} at {where}",
        )


def _move(
    state: ItemState, events: _Events, delta: int, reserved_delta: int, reason: str, where: str
) -> ItemState:
    there = state.at(where).moved(delta, reserved_delta)
    new = state.with_stock(
        state.on_hand + delta, state.reserved + reserved_delta, {**state.stock, where: there}
    )
    _changed(events, new, delta, reserved_delta, reason, where, there)
    return new


def _changed(
    events: _Events,
    new: ItemState,
    delta: int,
    reserved_delta: int,
    reason: str,
    where: str,
    there: LocationStock,
) -> None:
    events.add(
        StockChanged,
        delta=delta,
        reserved_delta=reserved_delta,
        reason=reason,
        on_hand=new.on_hand,
        reserved=new.reserved,
        available=new.on_hand - new.reserved,
        version=new.version,
        location=where,
        location_on_hand=there.on_hand,
        location_reserved=there.reserved,
        location_available=there.on_hand - there.reserved,
    )


def _transfer(
    state: ItemState,
    _: Reservation | None,
    command: TransferStock,
    __: datetime,
    events: _Events,
    locations: Locations,
) -> tuple[ItemState, Reservation | None]:
    _require_active(state)
    # Stock may leave an inactive location (to empty it), never arrive at one.
    source = _require_location(locations, command.from_location, receiving=False)
    target = _require_location(locations, command.to_location)
    quantity = command.quantity
    here = state.at(source)
    if quantity > here.available:
        raise Reject(
            "insufficient_stock",
            f"cannot transfer {quantity} from {source}: only {here.available} available there",
        )
    left, arrived = here.moved(-quantity, 0), state.at(target).moved(quantity, 0)
    new = state.with_stock(state.on_hand, state.reserved, {**state.stock, source: left, target: arrived})
    events.add(
        StockTransferred,
        from_location=source,
        to_location=target,
        quantity=quantity,
        version=new.version,
    )
    _changed(events, new, -quantity, 0, "transfer_stock", source, left)
    _changed(events, new, quantity, 0, "transfer_stock", target, arrived)
    return new, None


def _set_levels(
    state: ItemState,
    _: Reservation | None,
    command: SetLocationLevels,
    __: datetime,
    events: _Events,
    locations: Locations,
) -> tuple[ItemState, Reservation | None]:
    where = _require_location(locations, command.location)
    here = state.at(where)
    levelled = LocationStock(
        here.on_hand, here.reserved, command.min_stock_level, command.max_stock_level, here.alert_state
    )
    low, high = state.levels_at(levelled)
    if high is not None and high < low:
        raise Reject(
            "invalid_state", f"at {where} max_stock_level {high} would fall below min_stock_level {low}"
        )
    new = state._replace(stock={**state.stock, where: levelled}, version=state.version + 1)
    events.add(
        LocationLevelsSet,
        location=where,
        min_stock_level=command.min_stock_level,
        max_stock_level=command.max_stock_level,
        version=new.version,
    )
    return new, None


def _reserve(
    state: ItemState,
    existing: Reservation | None,
    command: ReserveStock,
    now: datetime,
    events: _Events,
    locations: Locations,
) -> tuple[ItemState, Reservation]:
    _require_active(state)
    where = _require_location(locations, command.location)
    if existing is not None:
        raise Reject("reservation_exists", f"reservation {command.reservation_id} already exists")
    if command.expires_at is not None and command.expires_at <= now:
        raise Reject("invalid_state", "expires_at is not in the future")
    available = state.at(where).available
    if command.quantity > available:
        raise Reject(
            "insufficient_stock",
            f"cannot reserve {command.quantity}: only {available} available at {where}",
        )
    reservation = Reservation(
        command.reservation_id,
        state.sku,
        command.quantity,
        "active",
        command.expires_at,
        command.command_id,
        where,
    )
    events.add(
        ReservationMade,
        reservation_id=reservation.reservation_id,
        quantity=reservation.quantity,
        expires_at=reservation.expires_at,
        location=where,
    )
    return _move(state, events, 0, command.quantity, "reserve_stock", where), reservation


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
    _: Locations,
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
    closed = reservation._replace(status=status)
    events.add(event_type, reservation_id=closed.reservation_id, quantity=closed.quantity)
    shipped = -closed.quantity if isinstance(command, FulfilReservation) else 0
    return _move(state, events, shipped, -closed.quantity, command.type, closed.location), closed


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
    """The item's alert on its totals (location None), then each location's whose stock or effective
    levels changed, on its own available stock."""
    current = _classify(after, before.alert_state, policy)
    event_type = transition_event_type(before.alert_state, current)
    if event_type is not None:
        events.add(
            event_type,
            previous=before.alert_state,
            current=current,
            available=after.available,
            min_stock_level=after.min_stock_level,
            max_stock_level=after.max_stock_level,
        )
        after = after._replace(alert_state=current)
    levels_changed = (
        before.min_stock_level != after.min_stock_level
        or before.max_stock_level != after.max_stock_level
        or before.is_trackable != after.is_trackable
    )
    was = before.stock
    changed = [code for code, here in after.stock.items() if levels_changed or here is not was.get(code)]
    if len(changed) > 1:
        changed.sort()
    moved: dict[str, LocationStock] = {}
    for code in changed:
        here = after.stock[code]
        low, high = after.levels_at(here)
        state = classify(
            here.alert_state, here.available, low, high, trackable=after.is_trackable, policy=policy
        )
        if state == here.alert_state:
            continue
        events.add(
            transition_event_type(here.alert_state, state),  # type: ignore[arg-type]  # states differ
            previous=here.alert_state,
            current=state,
            available=here.available,
            min_stock_level=low,
            max_stock_level=high,
            location=code,
        )
        moved[code] = here._replace(alert_state=state)
    return after._replace(stock={**after.stock, **moved}) if moved else after


_BY_TYPE: dict[type[StockCommand], _Rule] = {
    UpdateItemDetails: _update,
    DeactivateItem: _set_active,
    ReactivateItem: _set_active,
    ReceiveStock: _receive,
    AdjustStock: _adjust,
    CountStock: _count,
    ReserveStock: _reserve,
    ReleaseReservation: _close,
    FulfilReservation: _close,
    ExpireReservation: _close,
    TransferStock: _transfer,
    SetLocationLevels: _set_levels,
}
