"""Price read API, served from PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from api_edge.auth import require
from api_edge.price_views import (
    ChangeView,
    HistoryEntryView,
    HistoryPage,
    LowestPriceView,
    PricesView,
    PriceView,
    WindowView,
)
from api_edge.requests import AfterId
from api_edge.state import Clients, clients
from contracts.common import EARLIEST, Instant, Sku
from contracts.money import Currency, margin_pct, markup_pct
from db import price_reads

router = APIRouter(prefix="/v1", tags=["price reads"], dependencies=[Depends(require("viewer"))])
ClientsDep = Annotated[Clients, Depends(clients)]
SkuPath = Annotated[Sku, Path()]
CurrencyPath = Annotated[Currency, Path()]


@router.get("/items/{sku}/prices")
async def get_prices(sku: SkuPath, c: ClientsDep) -> PricesView:
    """Every currency's price in force, base terms, margin and markup, and the open windows."""
    async with c.reads.connect() as conn:
        rows = await price_reads.prices(conn, sku)
        window_rows = await price_reads.open_windows(conn, sku)
    by_currency: dict[str, list[WindowView]] = {}
    for w in window_rows:
        by_currency.setdefault(w["currency"], []).append(
            WindowView(**{k: w[k] for k in WindowView.model_fields})
        )
    result = []
    for row in rows:
        windows = by_currency.get(row["currency"], [])
        active = next((w for w in windows if w.change_id == row["effective_change_id"]), None)
        cost = active.cost_price if active else row["cost_price"]
        price = row["effective_price"]
        result.append(
            PriceView(
                **{k: row[k] for k in PriceView.model_fields if k in row},
                margin_pct=margin_pct(price, cost) if price is not None else None,
                markup_pct=markup_pct(price, cost) if price is not None else None,
                windows=windows,
            )
        )
    return PricesView(sku=sku, prices=result)


@router.get("/items/{sku}/prices/{currency}/history")
async def get_price_history(
    sku: SkuPath,
    currency: CurrencyPath,
    c: ClientsDep,
    after: AfterId = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> HistoryPage:
    """Every change of the price in force, oldest first, keyset-paged by id."""
    async with c.reads.connect() as conn:
        rows = await price_reads.history(conn, sku, currency, after=after, limit=limit)
    entries = [HistoryEntryView(**{k: r[k] for k in HistoryEntryView.model_fields}) for r in rows]
    return HistoryPage(
        sku=sku,
        currency=currency,
        entries=entries,
        next_after=entries[-1].id if len(entries) == limit else None,
    )


@router.get("/items/{sku}/prices/{currency}/lowest-prior")
async def get_lowest_prior_price(
    sku: SkuPath,
    currency: CurrencyPath,
    c: ClientsDep,
    at: Annotated[
        Instant | None,
        # The window's start must be an instant too.
        Query(
            ge=EARLIEST + timedelta(days=price_reads.PRIOR_PRICE_DAYS),
            description="The reference instant, timezone-aware (default: now); from 0001-01-31T00:00:00Z, "
            "so that the 30 days before it are instants too.",
        ),
    ] = None,
) -> LowestPriceView:
    """The lowest price in force during the 30 days before `at` (EU prior-price rule)."""
    moment = at or datetime.now(UTC)
    async with c.reads.connect() as conn:
        lowest = await price_reads.lowest_prior_price(conn, sku, currency, moment)
    return LowestPriceView(
        sku=sku, currency=currency, at=moment, days=price_reads.PRIOR_PRICE_DAYS, lowest_price=lowest
    )


@router.get("/price-changes")
async def list_price_changes(
    c: ClientsDep,
    status: Literal["pending", "approved", "rejected"] = "pending",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ChangeView]:
    """Price changes by status; `pending` is the approval queue."""
    async with c.engine.connect() as conn:
        rows = await price_reads.changes(conn, status=status, limit=limit)
    return [ChangeView(**{k: r[k] for k in ChangeView.model_fields}) for r in rows]
