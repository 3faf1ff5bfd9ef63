"""What the outbox relay writes to the events' dead-letter topic when the event topic refuses an event for
good. A reference, not the event: it must fit where the event did not. The event stays in the outbox."""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class EventDeadLetter(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "outbox_id": 41872,
                    "event_id": "3f1c8a52-6a3e-5d0b-9a51-8d0f3c1b7e21",
                    "event_type": "command_rejected",
                    "channel": "inventory",
                    "sku": "MUG-BLUE",
                    "size": 2097412,
                    "sha256": "9f2b5c0e8d7a6b4c3e1f0a9d8c7b6a5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a",
                    "reason": "MessageSizeTooLargeError: the message is 2097512 bytes when serialized, "
                    "larger than the maximum request size 1048576",
                    "head": '{"type":"command_rejected","event_id":"3f1c8a52-...',
                }
            ]
        },
    )

    outbox_id: int = Field(description="The outbox row: `SELECT payload FROM outbox WHERE id = ...`.")
    event_id: UUID
    event_type: str
    channel: str = Field(description="The live channel the event was published on, if Redis took it.")
    sku: str
    size: int = Field(description="Bytes of the event's JSON (UTF-8).")
    sha256: str = Field(description="Hex SHA-256 of the event's JSON (UTF-8).")
    reason: str = Field(description="Why the event topic refused it, as the producer or broker said.")
    head: str = Field(description="The event's JSON, first 1024 characters.")
