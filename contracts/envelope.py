"""The envelope every command and event carries."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.common import Sku


class CommandEnvelope(BaseModel):
    """Fields every command carries. `command_id` makes a command idempotent: it is applied at most once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(1, ge=1, le=1, description="Contract version of this command.")
    command_id: UUID = Field(description="Unique id chosen by the sender; a re-sent command reuses it.")
    sku: Sku
    issued_at: AwareDatetime = Field(description="When the sender issued the command (timezone-aware).")
    actor: str = Field(min_length=1, max_length=200, description="Who asked for the change.")
    source: str = Field(min_length=1, max_length=100, description="Which system sent the command.")
    expected_version: int | None = Field(
        None, ge=0, description="Apply only if the item is at this version (optimistic concurrency)."
    )


class EventEnvelope(BaseModel):
    """Fields every event carries. `event_id` is stable across redelivery so receivers can deduplicate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(1, ge=1, le=1, description="Contract version of this event.")
    event_id: UUID = Field(description="Stable id of this event; the same on every redelivery.")
    sku: Sku
    occurred_at: AwareDatetime = Field(description="When the change was applied (UTC).")
    command_id: UUID | None = Field(None, description="The command that caused this event, if any.")

    channel: ClassVar[str] = "inventory"
