"""HTTP response bodies of the price read API. Decimals are serialised as strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

from pydantic import BaseModel, Field


class WindowView(BaseModel):
    change_id: UUID
    selling_price: Decimal
    discount_price: Decimal | None
    cost_price: Decimal | None
    effective_from: datetime
    effective_until: datetime | None
    status: str
    requested_by: str
    approved_by: str | None


class PriceView(BaseModel):
    currency: str
    effective_price: Decimal | None = Field(description="The price in force: window, discount or base.")
    effective_change_id: UUID | None = Field(description="The active window, if one is in force.")
    selling_price: Decimal | None = Field(description="Base selling price.")
    discount_price: Decimal | None
    cost_price: Decimal | None
    margin_pct: Decimal | None = Field(description="(price - cost) / price on the price in force, in %.")
    markup_pct: Decimal | None = Field(description="(price - cost) / cost on the price in force, in %.")
    margin_state: str
    version: int
    windows: list[WindowView]


class PricesView(BaseModel):
    sku: str
    prices: list[PriceView]


class HistoryEntryView(BaseModel):
    id: int
    change_id: UUID
    command_id: UUID
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


class HistoryPage(BaseModel):
    sku: str
    currency: str
    entries: list[HistoryEntryView]
    next_after: int | None


class LowestPriceView(BaseModel):
    sku: str
    currency: str
    at: datetime
    days: int
    lowest_price: Decimal | None = Field(description="null when no price was in force in the period.")


class ChangeView(BaseModel):
    change_id: UUID
    sku: str
    currency: str
    selling_price: Decimal
    discount_price: Decimal | None
    cost_price: Decimal | None
    effective_from: datetime | None
    effective_until: datetime | None
    change_type: str
    reason: str | None
    why: str
    status: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    comment: str | None
