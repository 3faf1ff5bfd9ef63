"""HTTP response bodies of the read API."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field
from sqlalchemy import RowMapping

from contracts.locations import LocationStockView


def location_views(
    rows: Iterable[RowMapping], places: Collection[str] | None = None
) -> list[LocationStockView]:
    """An item's stock per location from db.read_repo.location_stock's rows, only at `places` if given: the
    one shape the read API's items and the relay's snapshot rows both carry."""
    fields = LocationStockView.model_fields
    return [
        LocationStockView(**{k: row[k] for k in fields})
        for row in rows
        if places is None or row["location"] in places
    ]


class ItemView(BaseModel):
    sku: str
    name: str
    description: str | None
    category: str | None
    on_hand: int
    reserved: int
    available: int
    min_stock_level: int
    max_stock_level: int | None
    cost_price: Decimal | None = Field(description="Decimal string.")
    weight_grams: int | None
    dimensions: str | None
    is_active: bool
    is_trackable: bool
    alert_state: Literal["ok", "low", "out", "over"]
    version: int
    created_at: datetime
    updated_at: datetime
    locations: list[LocationStockView] = Field(
        description="Stock at each location the item has a row at, by code; on_hand, reserved and "
        "available above are their sums."
    )


class CommandStatusView(BaseModel):
    command_id: UUID
    status: Literal["applied", "rejected", "dead_lettered", "unknown"] = Field(
        description="`unknown`: not applied yet (still in flight) or never received. `dead_lettered`: a "
        "worker put it on its DLQ (`reason` says why); a later replay that applies it reads `applied`."
    )
    reason: str | None = None
    sku: str | None = None
    command_type: str | None = None
    applied_at: datetime | None = None


class LedgerEntryView(BaseModel):
    id: int
    command_id: UUID
    delta: int = Field(description="Change of on-hand units.")
    reserved_delta: int = Field(description="Change of reserved units.")
    reason: str
    actor: str
    location: str = Field(description="Where the units moved; rows older than locations read `default`.")
    on_hand_after: int = Field(description="The SKU's on-hand total (every location) after this row.")
    reserved_after: int = Field(description="The SKU's reserved total (every location) after this row.")
    created_at: datetime


class LedgerPage(BaseModel):
    sku: str
    entries: list[LedgerEntryView]
    next_after: int | None = Field(description="Pass as `after` for the next page; null on the last page.")


class ItemPage(BaseModel):
    items: list[ItemView]
    next_after: str | None = Field(description="Pass as `after` for the next page; null on the last page.")


class AlertView(BaseModel):
    kind: Literal["stock", "margin"]
    sku: str
    state: str = Field(description="Stock: low, out or over. Margin: below.")
    available: int | None = None
    min_stock_level: int | None = None
    max_stock_level: int | None = None
    currency: str | None = None
    effective_price: Decimal | None = None
    margin_pct: Decimal | None = None
    since: datetime
