"""HTTP request bodies: the contract's command fields, minus what the edge fills in (actor, source, time);
and the query parameters several routes share."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from contracts.common import MultiLineText, Sku
from contracts.price_commands import SetPriceSpec
from contracts.stock_commands import (
    AdjustStockSpec,
    CountStockSpec,
    LocationLevelsSpec,
    ReasonSpec,
    ReceiveStockSpec,
    RegisterItemSpec,
    ReserveStockSpec,
    TransferStockSpec,
    UpdateItemDetailsSpec,
)

# Row ids are PostgreSQL bigints: a larger cursor would fail the query (a 500), so it is refused as input.
BIGINT_MAX = 2**63 - 1
AfterId = Annotated[int, Query(ge=0, le=BIGINT_MAX, description="Return entries after this id.")]


class CommandMeta(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: UUID | None = Field(
        None,
        description="Your id for this command; re-sending the same id never applies it twice. The command"
        " is published under an id derived from this one and your identity (the answer's `command_id`):"
        " another caller sending the same id gets another command id, and reads nothing of yours.",
    )
    expected_version: StrictInt | None = Field(
        None, ge=0, description="Apply only if the item is at this version."
    )


def _example(**fields: Any) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [fields]})


class RegisterItemRequest(RegisterItemSpec, CommandMeta):
    model_config = _example(sku="ABC-123", name="Blue mug", initial_quantity=10, min_stock_level=5)
    sku: Sku


class UpdateItemDetailsRequest(UpdateItemDetailsSpec, CommandMeta):
    model_config = _example(min_stock_level=8, cost_price="2.40")


class ReasonRequest(ReasonSpec, CommandMeta):
    model_config = _example(reason="discontinued")


class ReceiveStockRequest(ReceiveStockSpec, CommandMeta):
    model_config = _example(quantity=24)


class AdjustStockRequest(AdjustStockSpec, CommandMeta):
    model_config = _example(delta=-2, reason_code="damage")


class CountStockRequest(CountStockSpec, CommandMeta):
    model_config = _example(counted_quantity=31)


class ReserveStockRequest(ReserveStockSpec, CommandMeta):
    model_config = _example(reservation_id="order-1001", quantity=2, expires_at="2026-11-27T10:00:00Z")


class TransferStockRequest(TransferStockSpec, CommandMeta):
    model_config = _example(from_location="WH-EU-1", to_location="STORE-BER", quantity=6)


class LocationLevelsRequest(LocationLevelsSpec, CommandMeta):
    model_config = _example(min_stock_level=3, max_stock_level=40)


class Accepted(BaseModel):
    """202: the broker durably accepted the command; it is applied asynchronously.
    200 (with `?wait=`): the command was applied or rejected within the wait."""

    command_id: UUID
    status: Literal["accepted", "applied", "rejected"] = Field("accepted", examples=["accepted"])
    reason: str | None = Field(None, description="Why the command was rejected.")
    status_url: str = Field(description="Where to read the command's outcome.")


class SetPriceRequest(SetPriceSpec, CommandMeta):
    model_config = _example(
        currency="EUR", selling_price="12.90", cost_price="7.10", reason="supplier increase"
    )


class DecisionRequest(CommandMeta):
    comment: MultiLineText | None = Field(None, max_length=1000)
