"""Stock queries the stock worker runs inside its one transaction per batch. Plain rows in, plain rows out.

Set-based statements over arrays keep a batch of thousands of commands to a handful of round trips: the
reads run one by one, the writes are returned as `Write`s and go out together (db/writes.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

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


# What a batch reads once its items are locked, in one statement: the reservations it names, the item_stock
# rows at the (sku, location) pairs it touches and at its reservations' locations, every location's row of
# the `whole` SKUs, and whether each named location is active. A first column says which kind a row is.
# The pairs are joined rather than filtered for (`sku = ANY(..) AND (sku, location) IN (..)`), which read
# every location's row of each SKU: PostgreSQL's CPU per pair read fell from 2.2 to 1.6-1.8 us (450 pairs,
# 8,000 rows), and it stays one row per pair however many locations a SKU has.
_READ_STATE = """
WITH r AS (
    SELECT r.reservation_id, r.sku, r.quantity, r.status, r.expires_at, r.command_id, r.location
    FROM unnest($1::text[], $2::text[]) AS k (sku, reservation_id)
        JOIN reservations AS r USING (sku, reservation_id)
)
SELECT 'r', reservation_id, sku, quantity, NULL::int8, NULL::int8, NULL::int8, status, expires_at, command_id,
    location
FROM r
UNION ALL
SELECT 's', s.sku, s.location, s.on_hand, s.reserved, s.min_stock_level, s.max_stock_level, s.alert_state,
    NULL, NULL, NULL
FROM (SELECT * FROM unnest($3::text[], $4::text[]) AS p (sku, location) UNION SELECT sku, location FROM r)
    AS p JOIN item_stock AS s USING (sku, location)
WHERE s.sku <> ALL($5::text[])
UNION ALL
SELECT 's', sku, location, on_hand, reserved, min_stock_level, max_stock_level, alert_state, NULL, NULL, NULL
FROM item_stock WHERE sku = ANY($5::text[])
UNION ALL
SELECT 'l', code, NULL, NULL, NULL, NULL, NULL, CASE WHEN is_active THEN 'active' ELSE 'inactive' END,
    NULL, NULL, NULL
FROM locations WHERE code = ANY($6::text[])
"""


class BatchState(NamedTuple):
    reservations: list[ReservationRow]
    stock: list[StockRow]
    active: dict[str, bool]  # the named location codes that exist: active or not


async def read_state(
    pg: asyncpg.Connection,
    reservations: Iterable[tuple[str, str]],
    pairs: Iterable[tuple[str, str]],
    whole: Iterable[str],
    codes: Iterable[str],
) -> BatchState:
    """Reservations by (sku, reservation_id) (an id is unique per SKU); item_stock rows at the (sku,
    location) `pairs`, at the locations of those reservations and at every location of the `whole` SKUs;
    and whether each of `codes` is active (a code missing from the answer does not exist).

    Call it with the items of these SKUs locked (`lock_items`), in a statement after that lock: every
    writer of item_stock and of reservations (the stock worker's batch, db/stock_repo's writes) locks the
    item first, so the rows are current (this statement's snapshot is taken after any writer before us
    committed) and stay so until the transaction ends. Locking them too (FOR UPDATE) would mark every row
    once more (a WAL record each), for nothing; reading them with the lock's own statement would read
    them in a snapshot older than the lock."""
    everywhere = sorted(set(whole))
    keys = sorted(set(reservations))
    ordered = sorted(set(pairs))
    rows = await pg.fetch(
        _READ_STATE,
        [k[0] for k in keys],
        [k[1] for k in keys],
        [p[0] for p in ordered],
        [p[1] for p in ordered],
        everywhere,
        list(set(codes)),
    )
    found: list[ReservationRow] = []
    stock: list[StockRow] = []
    active: dict[str, bool] = {}
    for r in rows:
        kind = r[0]
        if kind == "s":
            stock.append(StockRow(r[1], r[2], r[3], r[4], r[5], r[6], r[7]))
        elif kind == "r":
            found.append(ReservationRow(r[1], r[2], r[3], r[7], r[8], r[9], r[10]))
        else:
            active[r[1]] = r[7] == "active"
    return BatchState(found, stock, active)


_STOCK_TYPES = ("text", "text", "int8", "int8", "int8", "int8", "text")


def upsert_stock(rows: Sequence[StockRow]) -> Write | None:
    """Stock at (sku, location) the transaction found no row for: a row appears the first time stock moves
    there."""
    return bulk.upsert("item_stock", StockRow._fields, _STOCK_TYPES, ("sku", "location"), rows)


def update_stock(rows: Sequence[StockRow]) -> Write | None:
    """Rows this transaction read under its items' locks (`read_state`): an UPDATE costs PostgreSQL less
    than an upsert, as for items (`update_stock_levels`); every row must be there."""
    return _update("update item_stock", "item_stock", StockRow._fields, _STOCK_TYPES, 2, rows)


def upsert_items(rows: Sequence[ItemRow]) -> Write | None:
    return bulk.upsert("items", ItemRow._fields, _ITEM_TYPES, ("sku",), rows)


def update_stock_levels(rows: Sequence[StockLevels]) -> Write | None:
    """The stock columns of items this transaction has locked: for PostgreSQL less than half the cost of
    `upsert_items` per row (bench/pg_statements.py), and most batches change nothing else. Every row must
    hit an item (a locked row cannot have gone away; anything else is a bug that must not commit)."""
    types = ("text", "int8", "int8", "text", "int8")
    return _update("update stock levels", "items", StockLevels._fields, types, 1, rows)


# A worker runs each statement as a prepared statement, and after five runs PostgreSQL plans it once for
# arrays of unknown length, which it takes for 10 rows. Joined with unnest(), a table of a few thousand rows
# is then cheaper to read whole into a hash than to probe 10 times: every batch of the 1,000 commands/s
# benchmark, ~5 commands, read all 2,000 rows of items and of item_stock (~250 us of PostgreSQL's CPU per
# batch, a fifth of it). Up to SMALL_UPDATE rows the UPDATE has no join: the rows are found by their key
# (`= ANY`, an index scan in any plan) and each takes its values from the arrays in a subquery, whose cost
# grows with rows x rows, which is nothing at this size. Larger batches keep the join, whose plan suits them
# (a hash join over a small table, index probes into a large one).
SMALL_UPDATE = 16


def _update(
    label: str,
    table: str,
    fields: Sequence[str],
    types: Sequence[str],
    keys: int,
    rows: Sequence[tuple[Any, ...]],
) -> Write | None:
    """UPDATE the non-key `fields` (and updated_at) of the rows whose key is the first `keys` fields (the
    first one text); every row must be there (`expected`)."""
    if not rows:
        return None
    values = f"({bulk.unnest(fields, types)}) AS t"
    key, changed = fields[:keys], fields[keys:]
    match = " AND ".join(f"t.{k} = {table}.{k}" for k in key)
    if len(rows) <= SMALL_UPDATE:
        sql = (
            f"UPDATE {table} SET ({', '.join(changed)}) ="
            f" (SELECT {', '.join(f't.{f}' for f in changed)} FROM {values} WHERE {match}),"
            f" updated_at = now() WHERE {table}.{key[0]} = ANY($1::text[])"
        )
        if keys > 1:  # the first key column alone finds more rows than the batch has
            sql += f" AND EXISTS (SELECT FROM {values} WHERE {match})"
    else:
        sets = ", ".join(f"{f} = t.{f}" for f in changed)
        sql = f"UPDATE {table} SET {sets}, updated_at = now() FROM {values} WHERE {match}"
    args = tuple(bulk.columns(rows, len(fields)))
    return Write(label, f"{sql} RETURNING 1", args, expected=len(rows))


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
