"""Stock events (past-tense names). `channel` says which live channel carries them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, TypeAdapter

from contracts.common import Money
from contracts.envelope import EventEnvelope

RejectionCode = Literal[
    "unknown_sku",
    "already_exists",
    "insufficient_stock",
    "version_mismatch",
    "inactive_item",
    "invalid_state",
    "unknown_reservation",
    "reservation_exists",
    "reservation_closed",
    "not_expired",
    "unknown_change",
    "change_closed",
    "window_overlap",
    "not_due",
    "self_approval",
]
AlertState = Literal["ok", "low", "out", "over"]


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


class ItemDetailsUpdated(EventEnvelope):
    """Some of an item's details changed; `changes` holds the new values."""

    type: Literal["item_details_updated"] = "item_details_updated"
    changes: dict[str, str | int | bool | None]
    version: int


class ItemDeactivated(EventEnvelope):
    type: Literal["item_deactivated"] = "item_deactivated"
    reason: str | None = None
    version: int


class ItemReactivated(EventEnvelope):
    type: Literal["item_reactivated"] = "item_reactivated"
    reason: str | None = None
    version: int


class StockChanged(EventEnvelope):
    """On-hand or reserved stock of an item changed."""

    type: Literal["stock_changed"] = "stock_changed"
    delta: int = Field(description="Change of on-hand units.")
    reserved_delta: int = Field(0, description="Change of reserved units.")
    reason: str = Field(description="Why: the command type or its reason code.")
    on_hand: int
    reserved: int
    available: int
    version: int


class _ReservationEvent(EventEnvelope):
    reservation_id: str
    quantity: int


class ReservationMade(_ReservationEvent):
    type: Literal["reservation_made"] = "reservation_made"
    expires_at: datetime | None = None


class ReservationReleased(_ReservationEvent):
    type: Literal["reservation_released"] = "reservation_released"


class ReservationExpired(_ReservationEvent):
    type: Literal["reservation_expired"] = "reservation_expired"


class ReservationFulfilled(_ReservationEvent):
    type: Literal["reservation_fulfilled"] = "reservation_fulfilled"


class _AlertEvent(EventEnvelope):
    channel: ClassVar[str] = "alerts"
    previous: AlertState
    current: AlertState
    available: int
    min_stock_level: int
    max_stock_level: int | None


class LowStockDetected(_AlertEvent):
    """Available stock fell to or below the item's minimum level."""

    type: Literal["low_stock_detected"] = "low_stock_detected"


class OutOfStock(_AlertEvent):
    """Nothing is available any more."""

    type: Literal["out_of_stock"] = "out_of_stock"


class BackInStock(_AlertEvent):
    """Stock is available again after being out."""

    type: Literal["back_in_stock"] = "back_in_stock"


class OverstockDetected(_AlertEvent):
    """Available stock rose above the item's maximum level."""

    type: Literal["overstock_detected"] = "overstock_detected"


class StockLevelNormal(_AlertEvent):
    """Available stock is back between the levels (past the clear margin)."""

    type: Literal["stock_level_normal"] = "stock_level_normal"


class CommandRejected(EventEnvelope):
    """A command was not applied; `reason` says why so the sender can act on it."""

    channel: ClassVar[str] = "alerts"
    type: Literal["command_rejected"] = "command_rejected"
    command_type: str
    code: RejectionCode
    reason: str


AlertEvent = LowStockDetected | OutOfStock | BackInStock | OverstockDetected | StockLevelNormal

StockEvent = Annotated[
    ItemRegistered
    | ItemDetailsUpdated
    | ItemDeactivated
    | ItemReactivated
    | StockChanged
    | ReservationMade
    | ReservationReleased
    | ReservationExpired
    | ReservationFulfilled
    | LowStockDetected
    | OutOfStock
    | BackInStock
    | OverstockDetected
    | StockLevelNormal
    | CommandRejected,
    Field(discriminator="type"),
]
STOCK_EVENT_ADAPTER: TypeAdapter[StockEvent] = TypeAdapter(StockEvent)
