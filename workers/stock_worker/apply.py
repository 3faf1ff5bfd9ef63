"""One batch of stock commands -> one PostgreSQL transaction. Translates between rows and rules."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.stock_commands import ReservationCommand, StockCommand
from contracts.stock_events import AlertState, ItemRegistered, StockChanged, StockEvent
from db import stock_repo
from db.stock_repo import ItemRow, LedgerRow, OutboxRow, ProcessedRow, ReservationRow
from workers.rules.alerts import AlertPolicy
from workers.rules.stock import Applied, ItemState, Reservation, ReservationStatus, decide


@dataclass(slots=True)
class BatchReport:
    applied: list[StockCommand] = field(default_factory=list)
    rejected: list[tuple[StockCommand, str]] = field(default_factory=list)
    duplicates: list[StockCommand] = field(default_factory=list)
    events: list[StockEvent] = field(default_factory=list)


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


def reservation_from_row(row: ReservationRow) -> Reservation:
    status = cast(ReservationStatus, row.status)
    return Reservation(row.reservation_id, row.sku, row.quantity, status, row.expires_at, row.command_id)


def ledger_rows(command: StockCommand, events: Sequence[StockEvent], now: datetime) -> list[LedgerRow]:
    """Every movement of stock becomes a ledger row, so the ledger always sums to on-hand and reserved."""
    rows: list[LedgerRow] = []
    for event in events:
        if isinstance(event, StockChanged):
            rows.append(
                LedgerRow(
                    command.command_id,
                    command.sku,
                    event.delta,
                    event.reserved_delta,
                    event.reason,
                    command.actor,
                    event.on_hand,
                    event.reserved,
                    now,
                )
            )
        elif isinstance(event, ItemRegistered) and event.on_hand:
            rows.append(
                LedgerRow(
                    command.command_id,
                    command.sku,
                    event.on_hand,
                    0,
                    "initial_quantity",
                    command.actor,
                    event.on_hand,
                    0,
                    now,
                )
            )
    return rows


def outbox_row(event: StockEvent, now: datetime) -> OutboxRow:
    return OutboxRow(event.event_id, event.type, event.channel, event.sku, event.model_dump_json(), now)


def _first_seen(
    commands: Sequence[StockCommand], seen: set[uuid.UUID]
) -> tuple[list[StockCommand], list[StockCommand]]:
    fresh: list[StockCommand] = []
    duplicates: list[StockCommand] = []
    for command in commands:
        if command.command_id in seen:
            duplicates.append(command)
        else:
            seen.add(command.command_id)
            fresh.append(command)
    return fresh, duplicates


def _reservation_key(command: StockCommand) -> tuple[str, str] | None:
    return (command.sku, command.reservation_id) if isinstance(command, ReservationCommand) else None


async def apply_batch(
    engine: AsyncEngine, commands: Sequence[StockCommand], now: datetime, policy: AlertPolicy
) -> BatchReport:
    """Apply `commands` (in partition order) in one transaction: claim ids, state, ledger, outbox."""
    report = BatchReport()
    async with engine.begin() as conn:
        pg = await stock_repo.driver(conn)
        already = await stock_repo.seen_command_ids(pg, [c.command_id for c in commands])
        fresh, report.duplicates = _first_seen(commands, already)
        states = {r.sku: state_from_row(r) for r in await stock_repo.lock_items(pg, (c.sku for c in fresh))}
        keys = (key for c in fresh if (key := _reservation_key(c)) is not None)
        reservations = {
            (r.sku, r.reservation_id): reservation_from_row(r)
            for r in await stock_repo.lock_reservations(pg, keys)
        }
        dirty_items: dict[str, ItemState] = {}
        dirty_reservations: dict[tuple[str, str], Reservation] = {}
        processed: list[ProcessedRow] = []
        ledger: list[LedgerRow] = []
        for command in fresh:
            key = _reservation_key(command)
            outcome = decide(
                states.get(command.sku), reservations.get(key) if key else None, command, now, policy
            )
            if isinstance(outcome, Applied):
                states[command.sku] = dirty_items[command.sku] = outcome.state
                if outcome.reservation is not None and key is not None:
                    reservations[key] = dirty_reservations[key] = outcome.reservation
                ledger.extend(ledger_rows(command, outcome.events, now))
                report.applied.append(command)
                report.events.extend(outcome.events)
                processed.append(
                    ProcessedRow(command.command_id, command.type, command.sku, "applied", None, now)
                )
            else:
                report.rejected.append((command, outcome.reason))
                report.events.append(outcome.event)
                reason = f"{outcome.code}: {outcome.reason}"
                processed.append(
                    ProcessedRow(command.command_id, command.type, command.sku, "rejected", reason, now)
                )
        await stock_repo.upsert_items(pg, [row_from_state(s) for s in dirty_items.values()])
        await stock_repo.upsert_reservations(
            pg,
            [
                ReservationRow(r.reservation_id, r.sku, r.quantity, r.status, r.expires_at, r.command_id)
                for r in dirty_reservations.values()
            ],
        )
        await stock_repo.insert_ledger(pg, ledger)
        await stock_repo.insert_processed(pg, processed)
        await stock_repo.insert_outbox(pg, [outbox_row(e, now) for e in report.events])
    return report
