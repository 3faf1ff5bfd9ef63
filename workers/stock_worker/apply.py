"""The stock domain's part of a batch transaction: lock items and reservations, decide, write changes."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast, get_args

import asyncpg

from contracts.common import DEFAULT_LOCATION
from contracts.stock_commands import (
    AdjustStock,
    CountStock,
    ReceiveStock,
    RegisterItem,
    ReservationCommand,
    ReserveStock,
    SetLocationLevels,
    StockCommand,
    TransferStock,
)
from contracts.stock_events import AlertState, ItemRegistered, StockChanged, StockEvent
from db import stock_repo
from db.stock_repo import ItemRow, LedgerRow, ReservationRow, StockLevels, StockRow
from db.writes import Write, present
from workers.pipeline.batch import Verdict
from workers.rules.alerts import AlertPolicy
from workers.rules.stock import (
    Applied,
    ItemState,
    LocationStock,
    Reservation,
    ReservationStatus,
    decide,
)

# By `type`, not isinstance: a check against a pydantic model class goes through ABCMeta (~0.3 us each),
# and this runs for every command of a batch.
_AT_ONE_LOCATION = frozenset(
    {"register_item", "receive_stock", "adjust_stock", "count_stock", "reserve_stock"}
)
_OneLocation = RegisterItem | ReceiveStock | AdjustStock | CountStock | ReserveStock


def state_from_row(row: ItemRow, stock: dict[str, LocationStock] | None = None) -> ItemState:
    """The item as the rules see it, with its stock at the locations loaded (`stock`; none by default)."""
    return ItemState(
        row.sku, row.name, row.stock_quantity, row.reserved_quantity, row.description, row.category,
        row.min_stock_level, row.max_stock_level, row.cost_price, row.weight_grams, row.dimensions,
        row.is_active, row.is_trackable, cast(AlertState, row.alert_state), row.version,
        {} if stock is None else stock,
    )  # fmt: skip


def location_from_row(row: StockRow) -> LocationStock:
    return LocationStock(
        row.on_hand, row.reserved, row.min_stock_level, row.max_stock_level, cast(AlertState, row.alert_state)
    )


def row_from_location(sku: str, location: str, s: LocationStock) -> StockRow:
    return StockRow(sku, location, s.on_hand, s.reserved, s.min_stock_level, s.max_stock_level, s.alert_state)


def row_from_state(s: ItemState) -> ItemRow:
    return ItemRow(
        s.sku, s.name, s.description, s.category, s.on_hand, s.reserved, s.weight_grams, s.dimensions,
        s.cost_price, s.min_stock_level, s.max_stock_level, s.is_active, s.is_trackable, s.alert_state,
        s.version,
    )  # fmt: skip


# What a stock movement leaves alone. An item whose details are unchanged gets only its stock columns
# written (stock_repo.update_stock_levels); any other change rewrites the whole row.
DETAIL_FIELDS = (
    "sku", "name", "description", "category", "min_stock_level", "max_stock_level", "cost_price",
    "weight_grams", "dimensions", "is_active", "is_trackable",
)  # fmt: skip
# By position: ItemState is a tuple, and an item getter builds the tuple to compare at a third of the cost.
_details = operator.itemgetter(*(ItemState._fields.index(name) for name in DETAIL_FIELDS))


def levels_from_state(s: ItemState) -> StockLevels:
    return StockLevels(s.sku, s.on_hand, s.reserved, s.alert_state, s.version)


def reservation_from_row(row: ReservationRow) -> Reservation:
    status = cast(ReservationStatus, row.status)
    return Reservation(
        row.reservation_id, row.sku, row.quantity, status, row.expires_at, row.command_id, row.location
    )


def row_from_reservation(r: Reservation) -> ReservationRow:
    return ReservationRow(
        r.reservation_id, r.sku, r.quantity, r.status, r.expires_at, r.command_id, r.location
    )


def ledger_rows(command: StockCommand, events: Sequence[StockEvent], now: datetime) -> list[LedgerRow]:
    """Every movement of stock becomes a ledger row, so the ledger always sums to on-hand and reserved."""
    rows: list[LedgerRow] = []
    for event in events:
        if type(event) is StockChanged:
            delta, reserved_delta, reason = event.delta, event.reserved_delta, event.reason
            on_hand, reserved, location = event.on_hand, event.reserved, event.location
        elif type(event) is ItemRegistered and event.on_hand:
            delta, reserved_delta, reason = event.on_hand, 0, "initial_quantity"
            on_hand, reserved = event.on_hand, 0
            location = getattr(command, "location", None) or DEFAULT_LOCATION
        else:
            continue
        rows.append(
            LedgerRow(
                command.command_id,
                command.sku,
                delta,
                reserved_delta,
                reason,
                command.actor,
                on_hand,
                reserved,
                now,
                location,
            )
        )
    return rows


_NAMING_RESERVATION = frozenset(get_args(ReservationCommand))


def _reservation_key(command: StockCommand) -> tuple[str, str] | None:
    # Not isinstance on the union: it tries each class in turn, twice per command of a batch.
    if type(command) in _NAMING_RESERVATION:
        return command.sku, cast(ReservationCommand, command).reservation_id
    return None


def _named_locations(command: StockCommand) -> tuple[str, ...]:
    """The locations a command names itself (not a reservation's): None stands for the default."""
    kind = command.type
    if kind in _AT_ONE_LOCATION:
        return (cast(_OneLocation, command).location or DEFAULT_LOCATION,)
    if kind == "transfer_stock":
        transfer = cast(TransferStock, command)
        return (transfer.from_location, transfer.to_location)
    if kind == "set_location_levels":
        return (cast(SetLocationLevels, command).location,)
    return ()


@dataclass(slots=True)
class StockSession:
    """The state one batch touches, loaded with row locks; what changed is written back once."""

    policy: AlertPolicy
    items: dict[str, ItemState] = field(default_factory=dict)
    loaded: dict[str, ItemState] = field(default_factory=dict)  # as the transaction found them
    reservations: dict[tuple[str, str], Reservation] = field(default_factory=dict)
    dirty_items: dict[str, ItemState] = field(default_factory=dict)
    dirty_reservations: dict[tuple[str, str], Reservation] = field(default_factory=dict)
    ledger: list[LedgerRow] = field(default_factory=list)
    locations: dict[str, bool] = field(default_factory=dict)  # the non-default codes named, active or not

    async def load(self, pg: asyncpg.Connection, commands: Sequence[StockCommand]) -> None:
        """Lock the items; then read the reservations and the stock rows at the locations the commands
        touch (a closing command's is its reservation's), which the items' locks guard (read_state)."""
        items = await stock_repo.lock_items(pg, (c.sku for c in commands))
        keys = {key for c in commands if (key := _reservation_key(c)) is not None}
        known = {r.sku for r in items}
        pairs: set[tuple[str, str]] = set()
        whole: set[str] = set()
        codes: set[str] = set()
        for c in commands:
            named = _named_locations(c)
            codes.update(named)
            if c.sku not in known:
                continue
            pairs.update((c.sku, code) for code in named)
            if c.type == "update_item_details":  # its levels and trackability apply at every location
                whole.add(c.sku)
        codes.discard(DEFAULT_LOCATION)
        stock: dict[str, dict[str, LocationStock]] = {sku: {} for sku in known}
        if keys or pairs or whole or codes:
            state = await stock_repo.read_state(pg, keys, pairs, whole, codes)
            self.reservations = {
                (r.sku, r.reservation_id): reservation_from_row(r) for r in state.reservations
            }
            self.locations = state.active
            for r in state.stock:
                if r.sku in stock:
                    stock[r.sku][r.location] = location_from_row(r)
        self.items = {r.sku: state_from_row(r, stock[r.sku]) for r in items}
        self.loaded = dict(self.items)

    def decide(self, command: StockCommand, now: datetime) -> Verdict:
        key = _reservation_key(command)
        reservation = self.reservations.get(key) if key else None
        outcome = decide(self.items.get(command.sku), reservation, command, now, self.policy, self.locations)
        if not isinstance(outcome, Applied):
            return Verdict((outcome.event,), f"{outcome.code}: {outcome.reason}")
        self.items[command.sku] = self.dirty_items[command.sku] = outcome.state
        if outcome.reservation is not None and key is not None:
            self.reservations[key] = self.dirty_reservations[key] = outcome.reservation
        self.ledger.extend(ledger_rows(command, outcome.events, now))
        return Verdict(outcome.events)

    def save(self, now: datetime) -> list[Write]:
        """What changed, as writes for the batch statement. An item goes into exactly one of the two item
        writes, so no row is touched twice in that statement."""
        rows: list[ItemRow] = []
        levels: list[StockLevels] = []
        new_stock: list[StockRow] = []
        stock: list[StockRow] = []
        for sku, state in self.dirty_items.items():
            before = self.loaded.get(sku)
            if before is not None and _details(before) == _details(state):
                levels.append(levels_from_state(state))
            else:
                rows.append(row_from_state(state))
            was = before.stock if before is not None else {}
            for code, here in state.stock.items():
                found = was.get(code)
                if here is not found:
                    (new_stock if found is None else stock).append(row_from_location(sku, code, here))
        reservations = [row_from_reservation(r) for r in self.dirty_reservations.values()]
        return present(
            stock_repo.upsert_items(rows),
            stock_repo.update_stock_levels(levels),
            stock_repo.update_stock(stock),
            stock_repo.upsert_stock(new_stock),
            stock_repo.upsert_reservations(reservations),
            stock_repo.insert_ledger(self.ledger),
        )
