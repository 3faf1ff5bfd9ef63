"""Stock commands (imperative names), published to the stock command topic with key = SKU.

`StockCommand` is the discriminated union of every command on that topic (`type` selects the model).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    TypeAdapter,
    model_serializer,
    model_validator,
)

from contracts.common import (
    DEFAULT_LOCATION,
    Instant,
    LocationCode,
    Money,
    MultiLineText,
    PlainText,
    Quantity,
    ReservationId,
)
from contracts.envelope import CommandEnvelope


def _examples(type_: str, **fields: Any) -> ConfigDict:
    envelope = {
        "command_id": "6f1c2b9e-3d0a-4f5e-9b1a-2c3d4e5f6a7b",
        "sku": "ABC-123",
        "issued_at": "2026-11-27T09:30:00Z",
        "actor": "wms-eu-1",
        "source": "wms",
    }
    return ConfigDict(json_schema_extra={"examples": [{**envelope, "type": type_, **fields}]})


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _is_none(value: object) -> bool:
    return value is None


def _at_location(what: str) -> Any:
    return Field(
        None,
        description=f"The location {what}; absent or null = '{DEFAULT_LOCATION}' (so producers that predate"
        " locations keep working unchanged).",
        examples=["WH-EU-1"],
        # Left off the wire when absent: such a record is byte for byte what a worker that predates
        # locations accepts (its contract forbids unknown fields), whichever is upgraded first.
        exclude_if=_is_none,
    )


class RegisterItemSpec(_Spec):
    """What a new item is."""

    name: PlainText = Field(min_length=1, max_length=200, description="Display name, no markup.")
    description: MultiLineText | None = Field(None, max_length=2000)
    category: PlainText | None = Field(None, max_length=100)
    initial_quantity: Quantity = Field(0, description="On-hand quantity at registration.")
    min_stock_level: Quantity = Field(0, description="At or below this available quantity the item is low.")
    max_stock_level: Quantity | None = Field(None, description="Above this available quantity: overstock.")
    cost_price: Money | None = Field(None, description="Unit cost as a decimal string.")
    weight_grams: Quantity | None = None
    dimensions: PlainText | None = Field(None, max_length=100, description="e.g. '20x10x5 cm'.")
    is_trackable: bool = Field(True, description="Untracked items never raise stock alerts.")
    location: LocationCode | None = _at_location("that receives the initial quantity")

    @model_validator(mode="after")
    def _levels_ordered(self) -> RegisterItemSpec:
        if self.max_stock_level is not None and self.max_stock_level < self.min_stock_level:
            raise ValueError("max_stock_level must not be below min_stock_level")
        return self


class UpdateItemDetailsSpec(_Spec):
    """Fields to change; omitted fields keep their value."""

    name: PlainText | None = Field(None, min_length=1, max_length=200)
    description: MultiLineText | None = Field(None, max_length=2000)
    category: PlainText | None = Field(None, max_length=100)
    min_stock_level: Quantity | None = None
    max_stock_level: Quantity | None = None
    cost_price: Money | None = None
    weight_grams: Quantity | None = None
    dimensions: PlainText | None = Field(None, max_length=100)
    is_trackable: bool | None = None

    @model_validator(mode="after")
    def _something_changes(self) -> UpdateItemDetailsSpec:
        changed = self.changes()
        if not changed:
            raise ValueError("give at least one field to change")
        for required in ("name", "min_stock_level", "is_trackable"):
            if required in changed and changed[required] is None:
                raise ValueError(f"{required} cannot be cleared")
        return self

    def changes(self) -> dict[str, Any]:
        """The detail fields the sender set (an explicit null clears an optional field)."""
        return {f: getattr(self, f) for f in UpdateItemDetailsSpec.model_fields if f in self.model_fields_set}


class ReasonSpec(_Spec):
    reason: PlainText | None = Field(None, max_length=500, description="Why, for the audit ledger.")


class ReceiveStockSpec(_Spec):
    """Goods arrived."""

    quantity: StrictInt = Field(gt=0, le=1_000_000_000, description="Units received (added to on-hand).")
    location: LocationCode | None = _at_location("that received the units")


class AdjustStockSpec(_Spec):
    """A correction of on-hand stock with a reason code."""

    delta: StrictInt = Field(
        ge=-1_000_000_000, le=1_000_000_000, description="Signed change of on-hand units."
    )
    reason_code: Literal["damage", "loss", "theft", "found", "return", "correction", "other"] = Field(
        description="Why the stock changed."
    )
    note: MultiLineText | None = Field(None, max_length=500)
    location: LocationCode | None = _at_location("whose stock changed")

    @model_validator(mode="after")
    def _nonzero(self) -> AdjustStockSpec:
        if self.delta == 0:
            raise ValueError("delta must not be zero")
        return self


class CountStockSpec(_Spec):
    """The result of a cycle count: the absolute on-hand quantity."""

    counted_quantity: Quantity = Field(description="Units physically counted.")
    note: MultiLineText | None = Field(None, max_length=500)
    location: LocationCode | None = _at_location("that was counted (only its stock is set)")


class ReserveStockSpec(_Spec):
    """Hold units for an order; they stay on hand but are no longer available."""

    reservation_id: ReservationId
    quantity: StrictInt = Field(gt=0, le=1_000_000_000)
    expires_at: Instant | None = Field(None, description="Released automatically at this time.")
    location: LocationCode | None = _at_location(
        "whose available units are held; release, fulfilment and expiry act there"
    )


class ReservationRefSpec(_Spec):
    reservation_id: ReservationId


class TransferStockSpec(_Spec):
    """Move available units from one location to another, in one step: never in both, never in neither."""

    from_location: LocationCode = Field(description="Where the units leave (its available stock).")
    to_location: LocationCode = Field(description="Where the units arrive.")
    quantity: StrictInt = Field(gt=0, le=1_000_000_000, description="Units moved; reserved units never move.")
    note: MultiLineText | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _two_places(self) -> TransferStockSpec:
        if self.from_location == self.to_location:
            raise ValueError("from_location and to_location must differ")
        return self


class LocationLevelsSpec(_Spec):
    """A location's own stock levels for the item; null follows the item's level."""

    min_stock_level: Quantity | None = Field(
        None, description="At or below this available quantity the location is low; null = the item's level."
    )
    max_stock_level: Quantity | None = Field(
        None, description="Above this available quantity the location is overstocked; null = the item's."
    )

    @model_validator(mode="after")
    def _levels_ordered(self) -> LocationLevelsSpec:
        low, high = self.min_stock_level, self.max_stock_level
        if low is not None and high is not None and high < low:
            raise ValueError("max_stock_level must not be below min_stock_level")
        return self


class RegisterItem(CommandEnvelope, RegisterItemSpec):
    """Register a new item (SKU) with its details and an optional initial quantity."""

    model_config = _examples("register_item", name="Blue mug", initial_quantity=10, min_stock_level=5)
    type: Literal["register_item"] = "register_item"


class UpdateItemDetails(CommandEnvelope, UpdateItemDetailsSpec):
    """Change an item's details or stock levels."""

    model_config = _examples("update_item_details", min_stock_level=8)
    type: Literal["update_item_details"] = "update_item_details"

    @model_serializer(mode="wrap")
    def _omit_unset_details(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # An omitted detail means "keep", an explicit null means "clear": the wire must keep them apart.
        data: dict[str, Any] = handler(self)
        for name in UpdateItemDetailsSpec.model_fields:
            if name not in self.model_fields_set:
                data.pop(name, None)
        return data


class DeactivateItem(CommandEnvelope, ReasonSpec):
    """Stop trading an item: no receipts, adjustments, counts or new reservations until reactivated."""

    model_config = _examples("deactivate_item", reason="discontinued")
    type: Literal["deactivate_item"] = "deactivate_item"


class ReactivateItem(CommandEnvelope, ReasonSpec):
    """Trade a deactivated item again."""

    model_config = _examples("reactivate_item")
    type: Literal["reactivate_item"] = "reactivate_item"


class ReceiveStock(CommandEnvelope, ReceiveStockSpec):
    """Add received units to on-hand stock."""

    model_config = _examples("receive_stock", quantity=24)
    type: Literal["receive_stock"] = "receive_stock"


class AdjustStock(CommandEnvelope, AdjustStockSpec):
    """Change on-hand stock by a signed delta, with a reason code."""

    model_config = _examples("adjust_stock", delta=-2, reason_code="damage")
    type: Literal["adjust_stock"] = "adjust_stock"


class CountStock(CommandEnvelope, CountStockSpec):
    """Set on-hand stock to a counted quantity (it may not fall below what is reserved)."""

    model_config = _examples("count_stock", counted_quantity=31)
    type: Literal["count_stock"] = "count_stock"


class ReserveStock(CommandEnvelope, ReserveStockSpec):
    """Reserve units; rejected (never clamped) when fewer are available."""

    model_config = _examples("reserve_stock", reservation_id="order-1001", quantity=2)
    type: Literal["reserve_stock"] = "reserve_stock"


class ReleaseReservation(CommandEnvelope, ReservationRefSpec):
    """Give reserved units back to available stock."""

    model_config = _examples("release_reservation", reservation_id="order-1001")
    type: Literal["release_reservation"] = "release_reservation"


class FulfilReservation(CommandEnvelope, ReservationRefSpec):
    """The reserved units shipped: they leave on-hand and reserved stock together."""

    model_config = _examples("fulfil_reservation", reservation_id="order-1001")
    type: Literal["fulfil_reservation"] = "fulfil_reservation"


class ExpireReservation(CommandEnvelope, ReservationRefSpec):
    """Issued by the worker's scheduler when a reservation's expiry has passed."""

    model_config = _examples("expire_reservation", reservation_id="order-1001")
    type: Literal["expire_reservation"] = "expire_reservation"


class TransferStock(CommandEnvelope, TransferStockSpec):
    """Move available units between two locations of the item, atomically."""

    model_config = _examples("transfer_stock", from_location="WH-EU-1", to_location="STORE-BER", quantity=6)
    type: Literal["transfer_stock"] = "transfer_stock"


class SetLocationLevels(CommandEnvelope, LocationLevelsSpec):
    """Set (or clear, with null) a location's own min/max stock levels for the item."""

    model_config = _examples(
        "set_location_levels", location="STORE-BER", min_stock_level=3, max_stock_level=40
    )
    type: Literal["set_location_levels"] = "set_location_levels"
    location: LocationCode


StockCommand = Annotated[
    RegisterItem
    | UpdateItemDetails
    | DeactivateItem
    | ReactivateItem
    | ReceiveStock
    | AdjustStock
    | CountStock
    | ReserveStock
    | ReleaseReservation
    | FulfilReservation
    | ExpireReservation
    | TransferStock
    | SetLocationLevels,
    Field(discriminator="type"),
]
STOCK_COMMAND_ADAPTER: TypeAdapter[StockCommand] = TypeAdapter(StockCommand)
ReservationCommand = ReserveStock | ReleaseReservation | FulfilReservation | ExpireReservation
