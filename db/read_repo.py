"""Read-side queries used by the edge."""

from __future__ import annotations

import uuid

from sqlalchemy import RowMapping, select
from sqlalchemy.ext.asyncio import AsyncConnection

from db.models import Item, ProcessedCommand


async def get_item(conn: AsyncConnection, sku: str) -> RowMapping | None:
    row = (await conn.execute(select(Item.__table__).where(Item.sku == sku))).mappings().first()
    return row


async def get_command(conn: AsyncConnection, command_id: uuid.UUID) -> RowMapping | None:
    query = select(ProcessedCommand.__table__).where(ProcessedCommand.command_id == command_id)
    return (await conn.execute(query)).mappings().first()
