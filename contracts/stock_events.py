"""Stock events (past-tense names)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from contracts.common import Money
from contracts.envelope import EventEnvelope

RejectionCode = Literal[
    "unknown_sku", "already_exists", "insufficient_stock", "version_mismatch", "inactive_item"
]


class ItemRegistered(EventEnvelope):
    """A new item exists."""

    type: Literal["item_registered"] = "item_registered"
    name: str
    category: str | None = None
    on_hand: int
    min_stock_level: int
    max_stock_level: int | None = None
    cost_price: Money | None = None
    version: int


class StockChanged(EventEnvelope):
    """On-hand or reserved stock of an item changed."""

    type: Literal["stock_changed"] = "stock_changed"
    delta: int = Field(description="Change of on-hand units.")
    reason: str = Field(description="Why: the command type or its reason code.")
    on_hand: int
    reserved: int
    available: int
    version: int


class CommandRejected(EventEnvelope):
    """A command was not applied; `reason` says why so the sender can act on it."""

    type: Literal["command_rejected"] = "command_rejected"
    channel = "alerts"
    command_type: str
    code: RejectionCode
    reason: str


StockEvent = Annotated[ItemRegistered | StockChanged | CommandRejected, Field(discriminator="type")]
STOCK_EVENT_ADAPTER: TypeAdapter[StockEvent] = TypeAdapter(StockEvent)
