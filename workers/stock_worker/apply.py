"""The stock domain's part of a batch transaction: lock items and reservations, decide, write changes."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

import asyncpg

from contracts.stock_commands import ReservationCommand, StockCommand
from contracts.stock_events import AlertState, ItemRegistered, StockChanged, StockEvent
from db import stock_repo
from db.stock_repo import ItemRow, LedgerRow, ReservationRow, StockLevels
from db.writes import Write, present
from workers.pipeline.batch import Verdict
from workers.rules.alerts import AlertPolicy
from workers.rules.stock import Applied, ItemState, Reservation, ReservationStatus, decide


def state_from_row(row: ItemRow) -> ItemState:
    return ItemState(
        sku=row.sku,
        name=row.name,
        description=row.description,
        category=row.category,
        on_hand=row.stock_quantity,
        reserved=row.reserved_quantity,
        min_stock_level=row.min_stock_level,
        max_stock_level=row.max_stock_level,
        cost_price=row.cost_price,
        weight_grams=row.weight_grams,
        dimensions=row.dimensions,
        is_active=row.is_active,
        is_trackable=row.is_trackable,
        alert_state=cast(AlertState, row.alert_state),
        version=row.version,
    )


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
_details = operator.attrgetter(*DETAIL_FIELDS)


def levels_from_state(s: ItemState) -> StockLevels:
    return StockLevels(s.sku, s.on_hand, s.reserved, s.alert_state, s.version)


def reservation_from_row(row: ReservationRow) -> Reservation:
    status = cast(ReservationStatus, row.status)
    return Reservation(row.reservation_id, row.sku, row.quantity, status, row.expires_at, row.command_id)


def row_from_reservation(r: Reservation) -> ReservationRow:
    return ReservationRow(r.reservation_id, r.sku, r.quantity, r.status, r.expires_at, r.command_id)


def ledger_rows(command: StockCommand, events: Sequence[StockEvent], now: datetime) -> list[LedgerRow]:
    """Every movement of stock becomes a ledger row, so the ledger always sums to on-hand and reserved."""
    rows: list[LedgerRow] = []
    for event in events:
        if isinstance(event, StockChanged):
            delta, reserved_delta, reason = event.delta, event.reserved_delta, event.reason
            on_hand, reserved = event.on_hand, event.reserved
        elif isinstance(event, ItemRegistered) and event.on_hand:
            delta, reserved_delta, reason = event.on_hand, 0, "initial_quantity"
            on_hand, reserved = event.on_hand, 0
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
            )
        )
    return rows


def _reservation_key(command: StockCommand) -> tuple[str, str] | None:
    return (command.sku, command.reservation_id) if isinstance(command, ReservationCommand) else None


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

    async def load(self, pg: asyncpg.Connection, commands: Sequence[StockCommand]) -> None:
        self.items = {
            r.sku: state_from_row(r) for r in await stock_repo.lock_items(pg, (c.sku for c in commands))
        }
        self.loaded = dict(self.items)
        keys = (key for c in commands if (key := _reservation_key(c)) is not None)
        rows = await stock_repo.lock_reservations(pg, keys)
        self.reservations = {(r.sku, r.reservation_id): reservation_from_row(r) for r in rows}

    def decide(self, command: StockCommand, now: datetime) -> Verdict:
        key = _reservation_key(command)
        reservation = self.reservations.get(key) if key else None
        outcome = decide(self.items.get(command.sku), reservation, command, now, self.policy)
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
        for sku, state in self.dirty_items.items():
            before = self.loaded.get(sku)
            if before is not None and _details(before) == _details(state):
                levels.append(levels_from_state(state))
            else:
                rows.append(row_from_state(state))
        reservations = [row_from_reservation(r) for r in self.dirty_reservations.values()]
        return present(
            stock_repo.upsert_items(rows),
            stock_repo.update_stock_levels(levels),
            stock_repo.upsert_reservations(reservations),
            stock_repo.insert_ledger(self.ledger),
        )
