"""Stock queries the stock worker runs inside its one transaction per batch. Plain rows in, plain rows out.

Set-based statements over arrays keep a batch of thousands of commands to a handful of round trips: the
reads run one by one, the writes are returned as `Write`s and go out together (db/writes.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import asyncpg

from db import bulk
from db.writes import Write


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
    location: str


class StockRow(NamedTuple):
    """An item's stock at one location (item_stock)."""

    sku: str
    location: str
    on_hand: int
    reserved: int
    min_stock_level: int | None
    max_stock_level: int | None
    alert_state: str


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
    location: str


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


# Rows of item_stock, then (sku NULL) whether each named location is active: one round trip for both. The
# pairs are joined rather than filtered for (`sku = ANY(..) AND (sku, location) IN (..)`), which read every
# location's row of each SKU: PostgreSQL's CPU per pair read fell from 2.2 to 1.6-1.8 us (450 pairs, 8,000
# rows), and it stays one row per pair however many locations a SKU has.
_READ_STOCK = f"""
SELECT {", ".join(f"s.{name}" for name in StockRow._fields)}
FROM unnest($1::text[], $2::text[]) AS p (sku, location) JOIN item_stock AS s USING (sku, location)
UNION ALL
SELECT {", ".join(StockRow._fields)} FROM item_stock WHERE sku = ANY($3::text[])
UNION ALL
SELECT NULL, code, NULL, NULL, NULL, NULL, CASE WHEN is_active THEN 'active' ELSE 'inactive' END
FROM locations WHERE code = ANY($4::text[])
"""


async def read_stock(
    pg: asyncpg.Connection,
    pairs: Iterable[tuple[str, str]],
    whole: Iterable[str],
    codes: Iterable[str],
) -> tuple[list[StockRow], dict[str, bool]]:
    """item_stock rows at (sku, location) `pairs` and at every location of the `whole` SKUs; and whether
    each of `codes` is active (a code missing from the answer does not exist).

    Call it with the items of these SKUs locked (`lock_items`), in a statement after that lock: every
    writer of item_stock locks the item first, so the rows are current (this statement's snapshot is
    taken after any writer before us committed) and stay so until the transaction ends. Locking them too
    (FOR UPDATE) would mark every row once more, for nothing."""
    everywhere = set(whole)
    ordered = sorted(p for p in set(pairs) if p[0] not in everywhere)  # those come with all their SKU's rows
    rows = await pg.fetch(
        _READ_STOCK,
        [p[0] for p in ordered],
        [p[1] for p in ordered],
        sorted(everywhere),
        list(set(codes)),
    )
    stock: list[StockRow] = []
    active: dict[str, bool] = {}
    for r in rows:
        if r[0] is None:
            active[r[1]] = r[6] == "active"
        else:
            stock.append(StockRow(*r))
    return stock, active


_STOCK_TYPES = ("text", "text", "int8", "int8", "int8", "int8", "text")


def upsert_stock(rows: Sequence[StockRow]) -> Write | None:
    """Stock at (sku, location) the transaction found no row for: a row appears the first time stock moves
    there."""
    return bulk.upsert("item_stock", StockRow._fields, _STOCK_TYPES, ("sku", "location"), rows)


def update_stock(rows: Sequence[StockRow]) -> Write | None:
    """Rows this transaction read under its items' locks (`read_stock`): an UPDATE costs PostgreSQL less
    than an upsert, as for items (`update_stock_levels`); every row must be there."""
    if not rows:
        return None
    sql = (
        "UPDATE item_stock SET on_hand = t.on_hand, reserved = t.reserved, min_stock_level ="
        " t.min_stock_level, max_stock_level = t.max_stock_level, alert_state = t.alert_state,"
        f" updated_at = now() FROM ({bulk.unnest(StockRow._fields, _STOCK_TYPES)}) AS t"
        " WHERE item_stock.sku = t.sku AND item_stock.location = t.location RETURNING 1"
    )
    args = tuple(bulk.columns(rows, len(StockRow._fields)))
    return Write("update item_stock", sql, args, expected=len(rows))


def upsert_items(rows: Sequence[ItemRow]) -> Write | None:
    return bulk.upsert("items", ItemRow._fields, _ITEM_TYPES, ("sku",), rows)


def update_stock_levels(rows: Sequence[StockLevels]) -> Write | None:
    """The stock columns of items this transaction has locked: for PostgreSQL less than half the cost of
    `upsert_items` per row (bench/pg_statements.py), and most batches change nothing else. Every row must
    hit an item (a locked row cannot have gone away; anything else is a bug that must not commit)."""
    if not rows:
        return None
    sql = (
        "UPDATE items SET stock_quantity = t.stock_quantity, reserved_quantity = t.reserved_quantity,"
        " alert_state = t.alert_state, version = t.version, updated_at = now()"
        f" FROM ({bulk.unnest(StockLevels._fields, ('text', 'int8', 'int8', 'text', 'int8'))}) AS t"
        " WHERE items.sku = t.sku RETURNING 1"
    )
    args = tuple(bulk.columns(rows, len(StockLevels._fields)))
    return Write("update stock levels", sql, args, expected=len(rows))


def upsert_reservations(rows: Sequence[ReservationRow]) -> Write | None:
    types = ("text", "text", "int8", "text", "timestamptz", "uuid", "text")
    return bulk.upsert("reservations", ReservationRow._fields, types, ("sku", "reservation_id"), rows)


_LEDGER_TYPES = ("uuid", "text", "int8", "int8", "text", "text", "int8", "int8", "timestamptz", "text")


def insert_ledger(rows: Sequence[LedgerRow]) -> Write | None:
    return bulk.insert("stock_ledger", LedgerRow._fields, _LEDGER_TYPES, rows, same=("created_at",))


async def due_reservations(pg: asyncpg.Connection, limit: int) -> list[tuple[str, str]]:
    """(reservation_id, sku) of active reservations whose expiry has passed, oldest first."""
    rows = await pg.fetch(
        "SELECT reservation_id, sku FROM reservations"
        " WHERE status = 'active' AND expires_at <= now() ORDER BY expires_at LIMIT $1",
        limit,
    )
    return [(r[0], r[1]) for r in rows]
