"""Price commands (imperative names), published to the price command topic with key = SKU."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from contracts.common import Instant, Money, MultiLineText, PlainText
from contracts.envelope import CommandEnvelope
from contracts.money import Currency


def _examples(type_: str, **fields: Any) -> ConfigDict:
    envelope = {
        "command_id": "9b2e4c1a-7d3f-4a6b-8c5d-1e2f3a4b5c6d",
        "sku": "ABC-123",
        "issued_at": "2026-11-27T09:30:00Z",
        "actor": "pricing-bot",
        "source": "erp",
    }
    return ConfigDict(json_schema_extra={"examples": [{**envelope, "type": type_, **fields}]})


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SetPriceSpec(_Spec):
    """A new price for one SKU and currency, now or for a window of time."""

    currency: Currency
    selling_price: Money = Field(description="Unit selling price as a decimal string.")
    cost_price: Money | None = Field(None, description="Unit cost; omitted keeps the current cost.")
    discount_price: Money | None = Field(
        None, description="A discounted selling price; when set it is the effective price."
    )
    effective_from: Instant | None = Field(None, description="Start of a scheduled window (future).")
    effective_until: Instant | None = Field(None, description="End of the window; then the base price.")
    change_type: Literal["manual", "bulk"] = Field("manual", description="How the change was made.")
    reason: PlainText | None = Field(None, max_length=500)
    notes: MultiLineText | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _consistent(self) -> SetPriceSpec:
        if self.discount_price is not None and self.discount_price > self.selling_price:
            raise ValueError("discount_price must not be above selling_price")
        if (
            self.effective_from is not None
            and self.effective_until is not None
            and self.effective_until <= self.effective_from
        ):
            raise ValueError("effective_until must be after effective_from")
        return self


class DecideSpec(_Spec):
    change_id: UUID = Field(description="The command_id of the SetPrice that is pending or scheduled.")
    comment: MultiLineText | None = Field(None, max_length=1000)


class SetPrice(CommandEnvelope, SetPriceSpec):
    """Set the price; a large move or a margin under the floor is held for approval."""

    model_config = _examples("set_price", currency="EUR", selling_price="12.90", cost_price="7.10")
    type: Literal["set_price"] = "set_price"


class ApprovePriceChange(CommandEnvelope, DecideSpec):
    """Approve a pending change; it is applied (or scheduled) and the approver recorded."""

    model_config = _examples("approve_price_change", change_id="9b2e4c1a-7d3f-4a6b-8c5d-1e2f3a4b5c6d")
    type: Literal["approve_price_change"] = "approve_price_change"


class RejectPriceChange(CommandEnvelope, DecideSpec):
    """Reject a pending change."""

    model_config = _examples("reject_price_change", change_id="9b2e4c1a-7d3f-4a6b-8c5d-1e2f3a4b5c6d")
    type: Literal["reject_price_change"] = "reject_price_change"


class CancelScheduledPrice(CommandEnvelope, DecideSpec):
    """Cancel a scheduled window before it starts, or end an active one now."""

    model_config = _examples("cancel_scheduled_price", change_id="9b2e4c1a-7d3f-4a6b-8c5d-1e2f3a4b5c6d")
    type: Literal["cancel_scheduled_price"] = "cancel_scheduled_price"


class ActivateScheduledPrice(CommandEnvelope, DecideSpec):
    """Issued by the price worker's scheduler when a window's start has come."""

    model_config = _examples("activate_scheduled_price", change_id="9b2e4c1a-7d3f-4a6b-8c5d-1e2f3a4b5c6d")
    type: Literal["activate_scheduled_price"] = "activate_scheduled_price"


class ExpireScheduledPrice(CommandEnvelope, DecideSpec):
    """Issued by the price worker's scheduler when a window's end has come."""

    model_config = _examples("expire_scheduled_price", change_id="9b2e4c1a-7d3f-4a6b-8c5d-1e2f3a4b5c6d")
    type: Literal["expire_scheduled_price"] = "expire_scheduled_price"


PriceCommand = Annotated[
    SetPrice
    | ApprovePriceChange
    | RejectPriceChange
    | CancelScheduledPrice
    | ActivateScheduledPrice
    | ExpireScheduledPrice,
    Field(discriminator="type"),
]
PRICE_COMMAND_ADAPTER: TypeAdapter[PriceCommand] = TypeAdapter(PriceCommand)
ChangeCommand = (
    ApprovePriceChange
    | RejectPriceChange
    | CancelScheduledPrice
    | ActivateScheduledPrice
    | ExpireScheduledPrice
)
