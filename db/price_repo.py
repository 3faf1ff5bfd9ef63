"""Price queries the price worker runs inside its batch transaction. Plain rows in, plain rows out."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import asyncpg

from db import bulk
from db.writes import Write

Key = tuple[str, str]  # (sku, currency)


class PriceRow(NamedTuple):
    sku: str
    currency: str
    selling_price: Decimal | None
    discount_price: Decimal | None
    cost_price: Decimal | None
    effective_price: Decimal | None
    effective_change_id: uuid.UUID | None
    margin_state: str
    version: int


class WindowRow(NamedTuple):
    change_id: uuid.UUID
    sku: str
    currency: str
    selling_price: Decimal
    discount_price: Decimal | None
    cost_price: Decimal | None
    effective_from: datetime
    effective_until: datetime | None
    status: str
    requested_by: str
    approved_by: str | None


class ChangeRow(NamedTuple):
    change_id: uuid.UUID
    sku: str
    currency: str
    selling_price: Decimal
    discount_price: Decimal | None
    cost_price: Decimal | None
    effective_from: datetime | None
    effective_until: datetime | None
    change_type: str
    reason: str | None
    notes: str | None
    why: str
    status: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    comment: str | None


class HistoryRow(NamedTuple):
    change_id: uuid.UUID
    command_id: uuid.UUID
    sku: str
    currency: str
    old_price: Decimal | None
    new_price: Decimal
    change_amount: Decimal | None
    change_pct: Decimal | None
    selling_price: Decimal
    discount_price: Decimal | None
    cost_price: Decimal | None
    margin_pct: Decimal | None
    change_type: str
    reason: str | None
    notes: str | None
    effective_from: datetime | None
    effective_until: datetime | None
    requested_by: str
    approved_by: str | None
    created_at: datetime


_PRICE_TYPES = ("text", "text", "numeric", "numeric", "numeric", "numeric", "uuid", "text", "int8")
_TERMS = ("uuid", "text", "text", "numeric", "numeric", "numeric", "timestamptz", "timestamptz")
_WINDOW_TYPES = (*_TERMS, "text", "text", "text")
_CHANGE_TYPES = (*_TERMS, "text", "text", "text", "text", "text", "text", "timestamptz", "text", "text")
_HISTORY_TYPES = (
    "uuid", "uuid", "text", "text", "numeric", "numeric", "numeric", "numeric", "numeric", "numeric",
    "numeric", "numeric", "text", "text", "text", "timestamptz", "timestamptz", "text", "text", "timestamptz",
)  # fmt: skip


def _by_keys(keys: Iterable[Key]) -> tuple[list[str], list[str]]:
    ordered = sorted(set(keys))
    return [k[0] for k in ordered], [k[1] for k in ordered]


async def lock_prices(pg: asyncpg.Connection, keys: Iterable[Key]) -> list[PriceRow]:
    skus, currencies = _by_keys(keys)
    if not skus:
        return []
    rows = await pg.fetch(
        f"SELECT {', '.join(PriceRow._fields)} FROM prices"
        " WHERE (sku, currency) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
        " ORDER BY sku, currency FOR UPDATE",
        skus,
        currencies,
    )
    return [PriceRow(*r) for r in rows]


async def open_windows(pg: asyncpg.Connection, keys: Iterable[Key]) -> list[WindowRow]:
    skus, currencies = _by_keys(keys)
    if not skus:
        return []
    rows = await pg.fetch(
        f"SELECT {', '.join(WindowRow._fields)} FROM price_windows"
        " WHERE (sku, currency) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
        " AND status IN ('scheduled', 'active') ORDER BY effective_from FOR UPDATE",
        skus,
        currencies,
    )
    return [WindowRow(*r) for r in rows]


async def window_keys(pg: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Key]:
    if not ids:
        return {}
    rows = await pg.fetch(
        "SELECT change_id, sku, currency FROM price_windows WHERE change_id = ANY($1::uuid[])", list(ids)
    )
    return {r[0]: (r[1], r[2]) for r in rows}


async def lock_changes(pg: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> list[ChangeRow]:
    if not ids:
        return []
    rows = await pg.fetch(
        f"SELECT {', '.join(ChangeRow._fields)} FROM price_changes"
        " WHERE change_id = ANY($1::uuid[]) ORDER BY change_id FOR UPDATE",
        sorted(set(ids)),
    )
    return [ChangeRow(*r) for r in rows]


async def existing_skus(pg: asyncpg.Connection, skus: Iterable[str]) -> set[str]:
    wanted = sorted(set(skus))
    if not wanted:
        return set()
    rows = await pg.fetch("SELECT sku FROM items WHERE sku = ANY($1::text[])", wanted)
    return {r[0] for r in rows}


def upsert_prices(rows: Sequence[PriceRow]) -> Write | None:
    return bulk.upsert("prices", PriceRow._fields, _PRICE_TYPES, ("sku", "currency"), rows)


def upsert_windows(rows: Sequence[WindowRow]) -> Write | None:
    return bulk.upsert("price_windows", WindowRow._fields, _WINDOW_TYPES, ("change_id",), rows)


def upsert_changes(rows: Sequence[ChangeRow]) -> Write | None:
    return bulk.upsert("price_changes", ChangeRow._fields, _CHANGE_TYPES, ("change_id",), rows)


def insert_history(rows: Sequence[HistoryRow]) -> Write | None:
    return bulk.insert("price_history", HistoryRow._fields, _HISTORY_TYPES, rows)


async def due_windows(pg: asyncpg.Connection, limit: int) -> list[tuple[uuid.UUID, str, str]]:
    """(change_id, sku, action) for windows whose start or end has come, oldest first."""
    rows = await pg.fetch(
        "(SELECT change_id, sku, 'activate' AS action, effective_from AS at FROM price_windows"
        "  WHERE status = 'scheduled' AND effective_from <= now() ORDER BY effective_from LIMIT $1)"
        " UNION ALL"
        " (SELECT change_id, sku, 'expire', effective_until FROM price_windows"
        "  WHERE status = 'active' AND effective_until <= now() ORDER BY effective_until LIMIT $1)"
        " ORDER BY at",
        limit,
    )
    return [(r[0], r[1], r[2]) for r in rows]
