"""Every Kafka topic the project owns, in one place. Keys are always the SKU."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    description: str
    compacted: bool = False


STOCK_COMMANDS = Topic(
    "invmon.stock.commands.v1", "Stock commands (register, receive, adjust, ...); key = SKU."
)
STOCK_COMMANDS_DLQ = Topic(
    "invmon.stock.commands.v1.dlq",
    "Stock command records that could not be decoded or validated, with the reason and origin in headers.",
)
PRICE_COMMANDS = Topic(
    "invmon.price.commands.v1", "Price commands (set, approve, reject, cancel); key = SKU."
)
PRICE_COMMANDS_DLQ = Topic(
    "invmon.price.commands.v1.dlq",
    "Price command records that could not be decoded or validated, with the reason and origin in headers.",
)
EVENTS = Topic(
    "invmon.events.v1", "Events of applied and rejected commands, published from the outbox; key = SKU."
)
EVENTS_DLQ = Topic(
    "invmon.events.v1.dlq",
    "Outbox events the event topic refused for good (too large, ...), by reference: outbox id, size, "
    "sha256, reason and the first KiB; the event itself stays in the outbox table.",
)

ALL_TOPICS: tuple[Topic, ...] = (
    STOCK_COMMANDS,
    STOCK_COMMANDS_DLQ,
    PRICE_COMMANDS,
    PRICE_COMMANDS_DLQ,
    EVENTS,
    EVENTS_DLQ,
)
