"""Read-side price queries used by the edge."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import RowMapping, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from db.price_models import Price, PriceChangeRequest, PriceHistory, PriceWindow

PRIOR_PRICE_DAYS = 30


async def prices(conn: AsyncConnection, sku: str) -> list[RowMapping]:
    query = select(Price.__table__).where(Price.sku == sku).order_by(Price.currency)
    return list((await conn.execute(query)).mappings())


async def open_windows(conn: AsyncConnection, sku: str) -> list[RowMapping]:
    query = (
        select(PriceWindow.__table__)
        .where(PriceWindow.sku == sku, PriceWindow.status.in_(("scheduled", "active")))
        .order_by(PriceWindow.effective_from)
    )
    return list((await conn.execute(query)).mappings())


async def history(
    conn: AsyncConnection, sku: str, currency: str, *, after: int, limit: int
) -> list[RowMapping]:
    query = (
        select(PriceHistory.__table__)
        .where(PriceHistory.sku == sku, PriceHistory.currency == currency, PriceHistory.id > after)
        .order_by(PriceHistory.id)
        .limit(limit)
    )
    return list((await conn.execute(query)).mappings())


async def lowest_prior_price(conn: AsyncConnection, sku: str, currency: str, at: datetime) -> Decimal | None:
    """The lowest price in force during the 30 days before `at` (the EU prior-price rule): the price in
    force when the period began, and every price set during it."""
    start = at - timedelta(days=PRIOR_PRICE_DAYS)
    row = await conn.execute(
        text(
            """
            SELECT min(new_price) FROM (
                SELECT new_price FROM price_history
                WHERE sku = :sku AND currency = :currency AND created_at >= :start AND created_at < :at
                UNION ALL
                (SELECT new_price FROM price_history
                 WHERE sku = :sku AND currency = :currency AND created_at <= :start
                 ORDER BY created_at DESC, id DESC LIMIT 1)
            ) AS in_force
            """
        ),
        {"sku": sku, "currency": currency, "start": start, "at": at},
    )
    value: Decimal | None = row.scalar()
    return value


async def changes(conn: AsyncConnection, *, status: str, limit: int) -> list[RowMapping]:
    query = (
        select(PriceChangeRequest.__table__)
        .where(PriceChangeRequest.status == status)
        .order_by(PriceChangeRequest.requested_at)
        .limit(limit)
    )
    return list((await conn.execute(query)).mappings())


async def margin_alerts(conn: AsyncConnection, limit: int) -> list[RowMapping]:
    query = (
        select(Price.sku, Price.currency, Price.effective_price, Price.cost_price, Price.updated_at)
        .where(Price.margin_state == "below")
        .order_by(Price.updated_at.desc())
        .limit(limit)
    )
    return list((await conn.execute(query)).mappings())
