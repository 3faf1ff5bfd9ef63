"""Queries the stock worker runs inside its one transaction per batch. Plain rows in, plain rows out."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import RowMapping, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import Item, OutboxEvent, ProcessedCommand, StockLedger

OUTBOX_CHANNEL = "invmon_outbox"

_ITEM_COLUMNS = (
    "sku",
    "name",
    "description",
    "category",
    "stock_quantity",
    "reserved_quantity",
    "weight_grams",
    "dimensions",
    "cost_price",
    "min_stock_level",
    "max_stock_level",
    "is_active",
    "is_trackable",
    "version",
)


async def seen_command_ids(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    if not ids:
        return set()
    rows = await conn.execute(select(ProcessedCommand.command_id).where(ProcessedCommand.command_id.in_(ids)))
    return set(rows.scalars())


async def lock_items(conn: AsyncConnection, skus: Iterable[str]) -> list[RowMapping]:
    """Current rows of these SKUs, locked until the transaction ends (sorted: no lock-order deadlocks)."""
    ordered = sorted(set(skus))
    if not ordered:
        return []
    columns = [getattr(Item, c) for c in _ITEM_COLUMNS]
    rows = await conn.execute(
        select(*columns).where(Item.sku.in_(ordered)).order_by(Item.sku).with_for_update()
    )
    return [row._mapping for row in rows]


async def upsert_items(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        return
    stmt = insert(Item)
    updates: dict[str, Any] = {c: stmt.excluded[c] for c in _ITEM_COLUMNS if c != "sku"}
    updates["updated_at"] = func.now()
    await conn.execute(stmt.on_conflict_do_update(index_elements=[Item.sku], set_=updates), list(rows))


async def insert_ledger(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(StockLedger), list(rows))


async def insert_processed(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Plain INSERT on purpose: a concurrent claim of the same id fails the transaction instead of
    applying twice; the batch is then retried and sees the id as already processed."""
    if rows:
        await conn.execute(insert(ProcessedCommand), list(rows))


async def insert_outbox(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(OutboxEvent), list(rows))
        # Delivered at commit, so the relay wakes exactly when the rows become visible.
        await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": OUTBOX_CHANNEL})
