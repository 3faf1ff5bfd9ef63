"""Read-side queries used by the edge."""

from __future__ import annotations

import uuid

from sqlalchemy import RowMapping, select
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import Item, ProcessedCommand, StockLedger


async def get_item(conn: AsyncConnection, sku: str) -> RowMapping | None:
    row = (await conn.execute(select(Item.__table__).where(Item.sku == sku))).mappings().first()
    return row


async def get_command(conn: AsyncConnection, command_id: uuid.UUID) -> RowMapping | None:
    query = select(ProcessedCommand.__table__).where(ProcessedCommand.command_id == command_id)
    return (await conn.execute(query)).mappings().first()


async def get_ledger(conn: AsyncConnection, sku: str, *, after: int, limit: int) -> list[RowMapping]:
    """Ledger rows of one SKU in order, keyset-paged by id."""
    query = (
        select(StockLedger.__table__)
        .where(StockLedger.sku == sku, StockLedger.id > after)
        .order_by(StockLedger.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).mappings())
