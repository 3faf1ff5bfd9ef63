"""One batch of stock commands -> one PostgreSQL transaction. Translates between rows and rules."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.stock_commands import StockCommand
from contracts.stock_events import ItemRegistered, StockChanged, StockEvent
from db import stock_repo
from workers.rules.stock import Applied, ItemState, decide


@dataclass(slots=True)
class BatchReport:
    applied: list[StockCommand] = field(default_factory=list)
    rejected: list[tuple[StockCommand, str]] = field(default_factory=list)
    duplicates: list[StockCommand] = field(default_factory=list)
    events: list[StockEvent] = field(default_factory=list)


def state_from_row(row: RowMapping | Mapping[str, Any]) -> ItemState:
    return ItemState(
        sku=row["sku"],
        name=row["name"],
        description=row["description"],
        category=row["category"],
        on_hand=row["stock_quantity"],
        reserved=row["reserved_quantity"],
        min_stock_level=row["min_stock_level"],
        max_stock_level=row["max_stock_level"],
        cost_price=row["cost_price"],
        weight_grams=row["weight_grams"],
        dimensions=row["dimensions"],
        is_active=row["is_active"],
        is_trackable=row["is_trackable"],
        version=row["version"],
    )


def row_from_state(state: ItemState) -> dict[str, Any]:
    return {
        "sku": state.sku,
        "name": state.name,
        "description": state.description,
        "category": state.category,
        "stock_quantity": state.on_hand,
        "reserved_quantity": state.reserved,
        "weight_grams": state.weight_grams,
        "dimensions": state.dimensions,
        "cost_price": state.cost_price,
        "min_stock_level": state.min_stock_level,
        "max_stock_level": state.max_stock_level,
        "is_active": state.is_active,
        "is_trackable": state.is_trackable,
        "version": state.version,
    }


def ledger_rows(command: StockCommand, events: Sequence[StockEvent]) -> list[dict[str, Any]]:
    """Every movement of stock becomes a ledger row, so the ledger always sums to on-hand."""
    rows: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, StockChanged):
            delta, reason = event.delta, event.reason
            on_hand, reserved = event.on_hand, event.reserved
        elif isinstance(event, ItemRegistered) and event.on_hand:
            delta, reason, on_hand, reserved = event.on_hand, "initial_quantity", event.on_hand, 0
        else:
            continue
        rows.append(
            {
                "command_id": command.command_id,
                "sku": command.sku,
                "delta": delta,
                "reserved_delta": 0,
                "reason": reason,
                "actor": command.actor,
                "on_hand_after": on_hand,
                "reserved_after": reserved,
            }
        )
    return rows


def outbox_row(event: StockEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "event_type": event.type,
        "channel": event.channel,
        "sku": event.sku,
        "payload": event.model_dump(mode="json"),
    }


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


async def apply_batch(engine: AsyncEngine, commands: Sequence[StockCommand], now: datetime) -> BatchReport:
    """Apply `commands` (in partition order) in one transaction: claim ids, state, ledger, outbox."""
    report = BatchReport()
    async with engine.begin() as conn:
        already = await stock_repo.seen_command_ids(conn, [c.command_id for c in commands])
        fresh, report.duplicates = _first_seen(commands, set(already))
        states = {
            row["sku"]: state_from_row(row)
            for row in await stock_repo.lock_items(conn, (c.sku for c in fresh))
        }
        dirty: dict[str, ItemState] = {}
        processed: list[dict[str, Any]] = []
        ledger: list[dict[str, Any]] = []
        for command in fresh:
            outcome = decide(states.get(command.sku), command, now)
            base = {"command_id": command.command_id, "command_type": command.type, "sku": command.sku}
            if isinstance(outcome, Applied):
                states[command.sku] = dirty[command.sku] = outcome.state
                ledger.extend(ledger_rows(command, outcome.events))
                report.applied.append(command)
                report.events.extend(outcome.events)
                processed.append({**base, "status": "applied", "reason": None, "applied_at": now})
            else:
                report.rejected.append((command, outcome.reason))
                report.events.append(outcome.event)
                processed.append(
                    {
                        **base,
                        "status": "rejected",
                        "reason": f"{outcome.code}: {outcome.reason}",
                        "applied_at": now,
                    }
                )
        await stock_repo.upsert_items(conn, [row_from_state(s) for s in dirty.values()])
        await stock_repo.insert_ledger(conn, ledger)
        await stock_repo.insert_processed(conn, processed)
        await stock_repo.insert_outbox(conn, [outbox_row(e) for e in report.events])
    return report
