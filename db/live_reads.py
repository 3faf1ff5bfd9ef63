"""Queries of the WebSocket relay: channel snapshots and the category of SKUs (for category filters)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from sqlalchemy import RowMapping, Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from db import read_repo
from db.models import Item
from db.price_models import Price

Q = TypeVar("Q", bound=Select[*tuple[Any, ...]])


def _filtered(query: Q, skus: Collection[str] | None, category: str | None, sku_column: Any) -> Q:
    if skus is not None:
        query = query.where(sku_column.in_(list(skus)))
    if category is not None:
        query = query.where(Item.category == category)
    return query


async def items(
    conn: AsyncConnection,
    skus: Collection[str] | None,
    category: str | None,
    limit: int,
    locations: Collection[str] | None = None,
) -> list[RowMapping]:
    """Items in SKU order; with `locations`, only those with stock (a row) at one of them."""
    query = select(
        Item.sku, Item.name, Item.category, Item.stock_quantity, Item.reserved_quantity,
        Item.min_stock_level, Item.max_stock_level, Item.alert_state, Item.is_active, Item.version,
    ).order_by(Item.sku).limit(limit)  # fmt: skip
    if locations is not None:
        query = query.where(read_repo.stocked_at(locations))
    return list((await conn.execute(_filtered(query, skus, category, Item.sku))).mappings())


async def prices(
    conn: AsyncConnection, skus: Collection[str] | None, category: str | None, limit: int
) -> list[RowMapping]:
    query = (
        select(Price.sku, Price.currency, Price.effective_price, Price.selling_price, Price.discount_price,
               Price.cost_price, Price.margin_state, Price.version)
        .join(Item, Item.sku == Price.sku)
        .order_by(Price.sku, Price.currency)
        .limit(limit)
    )  # fmt: skip
    return list((await conn.execute(_filtered(query, skus, category, Price.sku))).mappings())


async def stock_alerts(
    conn: AsyncConnection, skus: Collection[str] | None, category: str | None, limit: int
) -> list[RowMapping]:
    query = (
        select(Item.sku, Item.alert_state, Item.stock_quantity, Item.reserved_quantity, Item.updated_at)
        .where(Item.alert_state != "ok", Item.is_active.is_(True))
        .order_by(Item.sku)
        .limit(limit)
    )
    return list((await conn.execute(_filtered(query, skus, category, Item.sku))).mappings())


async def margin_alerts(
    conn: AsyncConnection, skus: Collection[str] | None, category: str | None, limit: int
) -> list[RowMapping]:
    query = (
        select(Price.sku, Price.currency, Price.effective_price, Price.cost_price, Price.updated_at)
        .join(Item, Item.sku == Price.sku)
        .where(Price.margin_state == "below")
        .order_by(Price.sku, Price.currency)
        .limit(limit)
    )
    return list((await conn.execute(_filtered(query, skus, category, Price.sku))).mappings())


async def categories(conn: AsyncConnection, skus: Collection[str]) -> dict[str, str | None]:
    """The category of each SKU that exists (a SKU without an item row is left out)."""
    query = select(Item.sku, Item.category).where(Item.sku.in_(list(skus)))
    return {row.sku: row.category for row in await conn.execute(query)}
