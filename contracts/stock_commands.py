"""Stock commands (imperative names). One discriminated union per topic: `StockCommand`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from contracts.common import Money, PlainText, Quantity
from contracts.envelope import CommandEnvelope

_EXAMPLE_ENVELOPE = {
    "command_id": "6f1c2b9e-3d0a-4f5e-9b1a-2c3d4e5f6a7b",
    "sku": "ABC-123",
    "issued_at": "2026-11-27T09:30:00Z",
    "actor": "wms-eu-1",
    "source": "wms",
}


class RegisterItemSpec(BaseModel):
    """What a new item is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: PlainText = Field(min_length=1, max_length=200, description="Display name, no markup.")
    description: PlainText | None = Field(None, max_length=2000)
    category: PlainText | None = Field(None, max_length=100)
    initial_quantity: Quantity = Field(0, description="On-hand quantity at registration.")
    min_stock_level: Quantity = Field(0, description="At or below this available quantity the item is low.")
    max_stock_level: Quantity | None = Field(None, description="Above this available quantity: overstock.")
    cost_price: Money | None = Field(None, description="Unit cost as a decimal string.")
    weight_grams: Quantity | None = None
    dimensions: PlainText | None = Field(None, max_length=100, description="e.g. '20x10x5 cm'.")
    is_trackable: bool = Field(True, description="Whether stock levels are tracked for this item.")


class ReceiveStockSpec(BaseModel):
    """Goods arrived."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    quantity: int = Field(gt=0, le=1_000_000_000, description="Units received (added to on-hand).")


class AdjustStockSpec(BaseModel):
    """A correction of on-hand stock with a reason code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delta: int = Field(ge=-1_000_000_000, le=1_000_000_000, description="Signed change of on-hand units.")
    reason_code: Literal["damage", "loss", "found", "return", "correction", "other"] = Field(
        description="Why the stock changed."
    )
    note: PlainText | None = Field(None, max_length=500)


class RegisterItem(CommandEnvelope, RegisterItemSpec):
    """Register a new item (SKU) with its details and an optional initial quantity."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_EXAMPLE_ENVELOPE, "type": "register_item", "name": "Blue mug"}]}
    )
    type: Literal["register_item"] = "register_item"


class ReceiveStock(CommandEnvelope, ReceiveStockSpec):
    """Add received units to on-hand stock."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**_EXAMPLE_ENVELOPE, "type": "receive_stock", "quantity": 24}]}
    )
    type: Literal["receive_stock"] = "receive_stock"


class AdjustStock(CommandEnvelope, AdjustStockSpec):
    """Change on-hand stock by a signed delta, with a reason code."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_EXAMPLE_ENVELOPE, "type": "adjust_stock", "delta": -2, "reason_code": "damage"}]
        }
    )
    type: Literal["adjust_stock"] = "adjust_stock"


StockCommand = Annotated[RegisterItem | ReceiveStock | AdjustStock, Field(discriminator="type")]
STOCK_COMMAND_ADAPTER: TypeAdapter[StockCommand] = TypeAdapter(StockCommand)
