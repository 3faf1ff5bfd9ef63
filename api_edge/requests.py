"""HTTP request bodies: the contract's command fields, minus what the edge fills in (actor, source, time)."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.common import Sku
from contracts.stock_commands import AdjustStockSpec, ReceiveStockSpec, RegisterItemSpec


class CommandMeta(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: UUID | None = Field(
        None, description="Your id for this command; re-sending the same id never applies it twice."
    )
    expected_version: int | None = Field(None, ge=0, description="Apply only if the item is at this version.")


class RegisterItemRequest(RegisterItemSpec, CommandMeta):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"sku": "ABC-123", "name": "Blue mug", "initial_quantity": 10}]}
    )
    sku: Sku


class ReceiveStockRequest(ReceiveStockSpec, CommandMeta):
    model_config = ConfigDict(json_schema_extra={"examples": [{"quantity": 24}]})


class AdjustStockRequest(AdjustStockSpec, CommandMeta):
    model_config = ConfigDict(json_schema_extra={"examples": [{"delta": -2, "reason_code": "damage"}]})


class Accepted(BaseModel):
    """The broker durably accepted the command; it is applied asynchronously."""

    command_id: UUID
    status: str = Field("accepted", examples=["accepted"])
    status_url: str = Field(description="Where to read the command's outcome.")
