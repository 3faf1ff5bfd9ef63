"""Stock queries the stock worker runs inside its one transaction per batch. Plain rows in, plain rows out.

Set-based statements over arrays and binary COPY keep a batch of thousands of commands to a handful of
round trips.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import asyncpg

from db import bulk


class ItemRow(NamedTuple):
    sku: str
    name: str
    description: str | None
    category: str | None
    stock_quantity: int
    reserved_quantity: int
    weight_grams: int | None
    dimensions: str | None
    cost_price: Decimal | None
    min_stock_level: int
    max_stock_level: int | None
    is_active: bool
    is_trackable: bool
    alert_state: str
    version: int


class ReservationRow(NamedTuple):
    reservation_id: str
    sku: str
    quantity: int
    status: str
    expires_at: datetime | None
    command_id: uuid.UUID | None


class StockLevels(NamedTuple):
    """The columns a stock movement changes (see `update_stock_levels`)."""

    sku: str
    stock_quantity: int
    reserved_quantity: int
    alert_state: str
    version: int


class LedgerRow(NamedTuple):
    command_id: uuid.UUID
    sku: str
    delta: int
    reserved_delta: int
    reason: str
    actor: str
    on_hand_after: int
    reserved_after: int
    created_at: datetime


_ITEM_TYPES = (
    "text", "text", "text", "text", "int8", "int8", "int8", "text", "numeric", "int8", "int8", "bool",
    "bool", "text", "int8",
)  # fmt: skip


async def lock_items(pg: asyncpg.Connection, skus: Iterable[str]) -> list[ItemRow]:
    """Current rows of these SKUs, locked until the transaction ends (sorted: no lock-order deadlocks)."""
    ordered = sorted(set(skus))
    if not ordered:
        return []
    columns = ", ".join(ItemRow._fields)
    rows = await pg.fetch(
        f"SELECT {columns} FROM items WHERE sku = ANY($1::text[]) ORDER BY sku FOR UPDATE", ordered
    )
    return [ItemRow(*r) for r in rows]


async def lock_reservations(pg: asyncpg.Connection, keys: Iterable[tuple[str, str]]) -> list[ReservationRow]:
    """Reservations by (sku, reservation_id); a reservation id is unique per SKU."""
    ordered = sorted(set(keys))
    if not ordered:
        return []
    columns = ", ".join(ReservationRow._fields)
    rows = await pg.fetch(
        f"SELECT {columns} FROM reservations"
        " WHERE (sku, reservation_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
        " ORDER BY sku, reservation_id FOR UPDATE",
        [k[0] for k in ordered],
        [k[1] for k in ordered],
    )
    return [ReservationRow(*r) for r in rows]


async def upsert_items(pg: asyncpg.Connection, rows: Sequence[ItemRow]) -> None:
    await bulk.upsert(pg, "items", ItemRow._fields, _ITEM_TYPES, ("sku",), rows)


async def update_stock_levels(pg: asyncpg.Connection, rows: Sequence[StockLevels]) -> None:
    """The stock columns of items this transaction has locked: for PostgreSQL less than half the cost of
    `upsert_items` per row (bench/pg_statements.py), and most batches change nothing else."""
    if not rows:
        return
    status = await pg.execute(
        "UPDATE items SET stock_quantity = t.stock_quantity, reserved_quantity = t.reserved_quantity,"
        " alert_state = t.alert_state, version = t.version, updated_at = now()"
        f" FROM ({bulk.unnest(StockLevels._fields, ('text', 'int8', 'int8', 'text', 'int8'))}) AS t"
        " WHERE items.sku = t.sku",
        *bulk.columns(rows, len(StockLevels._fields)),
    )
    if status != f"UPDATE {len(rows)}":
        raise RuntimeError(f"stock levels of {len(rows)} locked items: {status}")


async def upsert_reservations(pg: asyncpg.Connection, rows: Sequence[ReservationRow]) -> None:
    types = ("text", "text", "int8", "text", "timestamptz", "uuid")
    await bulk.upsert(pg, "reservations", ReservationRow._fields, types, ("sku", "reservation_id"), rows)


async def insert_ledger(pg: asyncpg.Connection, rows: Sequence[LedgerRow]) -> None:
    if rows:
        await pg.copy_records_to_table("stock_ledger", records=rows, columns=LedgerRow._fields)


async def due_reservations(pg: asyncpg.Connection, limit: int) -> list[tuple[str, str]]:
    """(reservation_id, sku) of active reservations whose expiry has passed, oldest first."""
    rows = await pg.fetch(
        "SELECT reservation_id, sku FROM reservations"
        " WHERE status = 'active' AND expires_at <= now() ORDER BY expires_at LIMIT $1",
        limit,
    )
    return [(r[0], r[1]) for r in rows]
