"""Stock events (past-tense names). `channel` says which live channel carries them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field, TypeAdapter

from contracts.common import DEFAULT_LOCATION, Money
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
    "unknown_location",
    "inactive_location",
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
    """On-hand or reserved stock of an item changed at one location. `on_hand`, `reserved` and `available`
    are the item's totals over every location; the `location_*` fields are that location's."""

    type: Literal["stock_changed"] = "stock_changed"
    delta: int = Field(description="Change of on-hand units (at the location, so of the total too).")
    reserved_delta: int = Field(0, description="Change of reserved units.")
    reason: str = Field(description="Why: the command type or its reason code.")
    on_hand: int = Field(description="The item's on-hand units over every location.")
    reserved: int = Field(description="The item's reserved units over every location.")
    available: int = Field(description="The item's available units over every location.")
    version: int
    location: str = Field(DEFAULT_LOCATION, description="Where the stock changed.", examples=["WH-EU-1"])
    location_on_hand: int | None = Field(
        None, description="On-hand units at the location after the change (null on events before locations)."
    )
    location_reserved: int | None = Field(
        None, description="Reserved units at the location after the change."
    )
    location_available: int | None = Field(
        None, description="Available units at the location after the change."
    )


class StockTransferred(EventEnvelope):
    """Available units moved from one location to another (two stock_changed events go with it)."""

    type: Literal["stock_transferred"] = "stock_transferred"
    from_location: str
    to_location: str
    quantity: int
    version: int


class LocationLevelsSet(EventEnvelope):
    """A location's own stock levels for the item changed; null = the item's level applies."""

    type: Literal["location_levels_set"] = "location_levels_set"
    location: str
    min_stock_level: int | None = None
    max_stock_level: int | None = None
    version: int


class _ReservationEvent(EventEnvelope):
    reservation_id: str
    quantity: int


class ReservationMade(_ReservationEvent):
    type: Literal["reservation_made"] = "reservation_made"
    expires_at: datetime | None = None
    location: str = Field(DEFAULT_LOCATION, description="Where the units are held.")


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
    location: str | None = Field(
        None,
        description="Null: the item's alert on its total available stock. A location code: the alert of that"
        " location, on its available stock and its effective levels (its own, else the item's).",
    )


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
    | StockTransferred
    | LocationLevelsSet
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
