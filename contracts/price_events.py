"""Price events (past-tense names). Money travels as decimal strings; percentages too."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import Field, PlainSerializer, TypeAdapter

from contracts.common import Money
from contracts.envelope import EventEnvelope
from contracts.stock_events import CommandRejected

Percent = Annotated[Decimal, PlainSerializer(lambda d: str(d), return_type=str, when_used="json")]
ChangeType = Literal["manual", "bulk", "scheduled", "approval"]


class _PriceEvent(EventEnvelope):
    channel: ClassVar[str] = "prices"
    currency: str


class PriceChanged(_PriceEvent):
    """The effective price of a SKU changed."""

    type: Literal["price_changed"] = "price_changed"
    change_id: UUID
    change_type: ChangeType
    old_price: Money | None
    new_price: Money
    selling_price: Money
    discount_price: Money | None
    cost_price: Money | None
    margin_pct: Percent | None
    markup_pct: Percent | None
    reason: str | None = None
    notes: str | None = None
    effective_from: datetime | None = None
    effective_until: datetime | None = None
    requested_by: str
    approved_by: str | None = None
    version: int


class PriceChangeScheduled(_PriceEvent):
    """A price window was accepted; it activates at `effective_from`."""

    type: Literal["price_change_scheduled"] = "price_change_scheduled"
    change_id: UUID
    selling_price: Money
    discount_price: Money | None
    effective_from: datetime
    effective_until: datetime | None


class PriceChangePendingApproval(_PriceEvent):
    """A change was held: it moves the price too far or puts the margin under the floor."""

    channel: ClassVar[str] = "alerts"
    type: Literal["price_change_pending_approval"] = "price_change_pending_approval"
    change_id: UUID
    requested_by: str
    old_price: Money | None
    new_price: Money
    change_pct: Percent | None
    margin_pct: Percent | None
    why: str = Field(description="Which rule held the change.")


class PriceChangeApproved(_PriceEvent):
    type: Literal["price_change_approved"] = "price_change_approved"
    change_id: UUID
    approved_by: str
    comment: str | None


class PriceChangeRejected(_PriceEvent):
    type: Literal["price_change_rejected"] = "price_change_rejected"
    change_id: UUID
    rejected_by: str
    comment: str | None


class ScheduledPriceActivated(_PriceEvent):
    type: Literal["scheduled_price_activated"] = "scheduled_price_activated"
    change_id: UUID


class ScheduledPriceExpired(_PriceEvent):
    type: Literal["scheduled_price_expired"] = "scheduled_price_expired"
    change_id: UUID


class ScheduledPriceCancelled(_PriceEvent):
    type: Literal["scheduled_price_cancelled"] = "scheduled_price_cancelled"
    change_id: UUID


class _MarginEvent(_PriceEvent):
    channel: ClassVar[str] = "alerts"
    margin_pct: Percent | None
    floor_pct: Percent


class MarginBelowFloor(_MarginEvent):
    type: Literal["margin_below_floor"] = "margin_below_floor"


class MarginRecovered(_MarginEvent):
    type: Literal["margin_recovered"] = "margin_recovered"


PriceEvent = Annotated[
    PriceChanged
    | PriceChangeScheduled
    | PriceChangePendingApproval
    | PriceChangeApproved
    | PriceChangeRejected
    | ScheduledPriceActivated
    | ScheduledPriceExpired
    | ScheduledPriceCancelled
    | MarginBelowFloor
    | MarginRecovered
    | CommandRejected,
    Field(discriminator="type"),
]
PRICE_EVENT_ADAPTER: TypeAdapter[PriceEvent] = TypeAdapter(PriceEvent)
