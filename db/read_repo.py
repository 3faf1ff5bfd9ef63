"""Read-side queries used by the edge."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from sqlalchemy import Exists, RowMapping, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from db import dead_letter_repo
from db.models import Item, ItemStock, ProcessedCommand, StockLedger

ITEM_STOCK = ItemStock.__table__


def stocked_at(locations: Collection[str]) -> Exists:
    """An item filter: it has a stock row at one of `locations` (stock has moved there once, even if none
    is left)."""
    return exists().where(ItemStock.sku == Item.sku, ItemStock.location.in_(list(locations)))


async def location_stock(conn: AsyncConnection, skus: Sequence[str]) -> dict[str, list[RowMapping]]:
    """Each SKU's stock at every location it has a row at, by code, with the levels in effect there (a
    NULL level follows the item's): one query for a whole page of items."""
    if not skus:
        return {}
    stock, item = ITEM_STOCK.c, Item.__table__.c
    query = (
        select(
            stock.sku,
            stock.location,
            stock.on_hand,
            stock.reserved,
            (stock.on_hand - stock.reserved).label("available"),
            stock.alert_state,
            func.coalesce(stock.min_stock_level, item.min_stock_level).label("min_stock_level"),
            func.coalesce(stock.max_stock_level, item.max_stock_level).label("max_stock_level"),
            (stock.min_stock_level.is_not(None) | stock.max_stock_level.is_not(None)).label("own_levels"),
        )
        .join_from(ITEM_STOCK, Item.__table__, item.sku == stock.sku)
        .where(stock.sku.in_(list(skus)))
        # Code point order (not the database's locale), so "sorted by code" means the same to every client.
        .order_by(stock.sku, stock.location.collate("C"))
    )
    found: dict[str, list[RowMapping]] = {sku: [] for sku in skus}
    for row in (await conn.execute(query)).mappings():
        found[row["sku"]].append(row)
    return found


async def get_item(conn: AsyncConnection, sku: str) -> RowMapping | None:
    row = (await conn.execute(select(Item.__table__).where(Item.sku == sku))).mappings().first()
    return row


async def get_command(
    conn: AsyncConnection, command_id: uuid.UUID, *, actor: str | None
) -> RowMapping | None:
    """A command's outcome; with `actor`, only if that principal sent it (None: whoever sent it)."""
    query = select(ProcessedCommand.__table__).where(ProcessedCommand.command_id == command_id)
    if actor is not None:
        query = query.where(ProcessedCommand.actor == actor)
    return (await conn.execute(query)).mappings().first()


async def get_dead_letter(
    conn: AsyncConnection, command_id: uuid.UUID, *, actor: str | None
) -> RowMapping | None:
    """The latest dead letter of a command (a processed row, read first, wins over it)."""
    return await dead_letter_repo.latest_for_command(conn, command_id, actor=actor)


async def get_ledger(
    conn: AsyncConnection, sku: str, *, after: int, limit: int, location: str | None = None
) -> list[RowMapping]:
    """Ledger rows of one SKU in order (at one location, if given), keyset-paged by id."""
    query = (
        select(StockLedger.__table__)
        .where(StockLedger.sku == sku, StockLedger.id > after)
        .order_by(StockLedger.id)
        .limit(limit)
    )
    if location is not None:
        query = query.where(StockLedger.location == location)
    return list((await conn.execute(query)).mappings())


async def list_items(
    conn: AsyncConnection,
    *,
    category: str | None,
    alert_state: str | None,
    active: bool | None,
    text: str | None,
    after: str | None,
    limit: int,
    location: str | None = None,
) -> list[RowMapping]:
    """Items in SKU order, keyset-paged after the SKU `after`, filtered; with `location`, the items that
    have a row there (stock has moved there once, even if none is left)."""
    query = select(Item.__table__).order_by(Item.sku).limit(limit)
    if location is not None:
        query = query.where(stocked_at([location]))
    if category is not None:
        query = query.where(Item.category == category)
    if alert_state is not None:
        query = query.where(Item.alert_state == alert_state)
    if active is not None:
        query = query.where(Item.is_active.is_(active))
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        query = query.where(Item.sku.ilike(pattern) | Item.name.ilike(pattern))
    if after is not None:
        query = query.where(Item.sku > after)
    return list((await conn.execute(query)).mappings())


async def stock_alerts(conn: AsyncConnection, limit: int) -> list[RowMapping]:
    query = (
        select(Item.sku, Item.name, Item.alert_state, Item.stock_quantity, Item.reserved_quantity,
               Item.min_stock_level, Item.max_stock_level, Item.updated_at)
        .where(Item.alert_state != "ok", Item.is_active.is_(True))
        .order_by(Item.updated_at.desc())
        .limit(limit)
    )  # fmt: skip
    return list((await conn.execute(query)).mappings())
