"""Exports of the audit trail (stock ledger, price history): the row shapes and the one query both the edge's
`/v1/exports/...` and `invmon export` stream from.

Each shape is one column list: its names are the CSV header and the NDJSON keys, its SQL expressions render
money as decimal text and instants as ISO 8601 UTC in PostgreSQL, so no float or local time can creep in on
the way out. Queries name tables and columns only (they keep working on the month-partitioned tables), and
order by (created_at, id) so that an export of the same range is the same file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

ExportKind = Literal["ledger", "price-history"]
EXPORT_KINDS: tuple[ExportKind, ...] = ("ledger", "price-history")
# Rows per round trip of the server-side cursor: what one chunk of the response holds (~1 MB of CSV).
CHUNK_ROWS = 5000


def _utc(column: str) -> str:
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sql: str


@dataclass(frozen=True, slots=True)
class Shape:
    kind: ExportKind
    table: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _plain(*names: str) -> tuple[Column, ...]:
    return tuple(Column(n, n) for n in names)


def _text(*names: str) -> tuple[Column, ...]:
    return tuple(Column(n, f"{n}::text") for n in names)


LEDGER = Shape(
    "ledger",
    "stock_ledger",
    (
        *_plain("id"),
        Column("created_at", _utc("created_at")),
        *_text("command_id"),
        *_plain("sku", "delta", "reserved_delta", "on_hand_after", "reserved_after", "reason", "actor"),
        *_plain("location"),
    ),
)
PRICE_HISTORY = Shape(
    "price-history",
    "price_history",
    (
        *_plain("id"),
        Column("created_at", _utc("created_at")),
        *_text("change_id", "command_id"),
        *_plain("sku", "currency"),
        *_text(
            "old_price",
            "new_price",
            "change_amount",
            "change_pct",
            "selling_price",
            "discount_price",
            "cost_price",
            "margin_pct",
        ),
        *_plain("change_type", "reason", "notes"),
        Column("effective_from", _utc("effective_from")),
        Column("effective_until", _utc("effective_until")),
        *_plain("requested_by", "approved_by"),
    ),
)
SHAPES: dict[ExportKind, Shape] = {s.kind: s for s in (LEDGER, PRICE_HISTORY)}


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """At most one of sku and category; `since` inclusive, `until` exclusive (either may be open);
    `location` for the ledger only (price history has no location)."""

    sku: str | None = None
    category: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    location: str | None = None


def refusal(shape: Shape, f: ExportFilter) -> str | None:
    """Why this filter cannot apply to this export, or None."""
    if f.location is not None and "location" not in shape.names:
        return f"the {shape.kind} export has no location"
    return None


def _where(f: ExportFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if f.sku is not None:
        args.append(f.sku)
        clauses.append(f"sku = ${len(args)}")
    if f.category is not None:
        args.append(f.category)
        # The category an item has now: the ledger keeps no copy of it.
        clauses.append(f"sku IN (SELECT sku FROM items WHERE category = ${len(args)})")
    if f.location is not None:
        args.append(f.location)
        clauses.append(f"location = ${len(args)}")
    if f.since is not None:
        args.append(f.since)
        clauses.append(f"created_at >= ${len(args)}")
    if f.until is not None:
        args.append(f.until)
        clauses.append(f"created_at < ${len(args)}")
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), args


def select(shape: Shape, f: ExportFilter) -> tuple[str, list[Any]]:
    where, args = _where(f)
    columns = ", ".join(c.sql for c in shape.columns)
    return f"SELECT {columns} FROM {shape.table} {where} ORDER BY created_at, id", args


async def count(pg: asyncpg.Connection, shape: Shape, f: ExportFilter) -> int:
    where, args = _where(f)
    total: int = await pg.fetchval(f"SELECT count(*) FROM {shape.table} {where}", *args)
    return total


async def batches(
    pg: asyncpg.Connection, shape: Shape, f: ExportFilter, chunk: int = CHUNK_ROWS
) -> AsyncIterator[Sequence[asyncpg.Record]]:
    """The rows in export order, `chunk` at a time from a server-side cursor: memory holds one chunk
    whatever the range. Needs an open transaction on `pg` (a cursor lives in one)."""
    query, args = select(shape, f)
    cursor = await pg.cursor(query, *args)
    while rows := await cursor.fetch(chunk):
        yield rows
