"""Per-record decoding and dead-lettering, shared by every command worker.

One bad record must never fail its batch: each record is validated on its own, and a bad one goes to the
dead-letter topic with its original bytes, key and headers, plus the reason and its origin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pydantic import TypeAdapter, ValidationError

T = TypeVar("T")

REASON_HEADER = "x-dlq-reason"
ORIGIN_TOPIC_HEADER = "x-origin-topic"
ORIGIN_PARTITION_HEADER = "x-origin-partition"
ORIGIN_OFFSET_HEADER = "x-origin-offset"


class Record(Protocol):
    """The parts of an aiokafka ConsumerRecord we use."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class RawSender(Protocol):
    """An aiokafka producer: `send` enqueues in order and returns the future of the broker's ack."""

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Awaitable[Any]: ...


@dataclass(frozen=True, slots=True)
class Invalid:
    record: Record
    reason: str


@dataclass(frozen=True, slots=True)
class Decoded(Generic[T]):
    valid: list[T]
    invalid: list[Invalid]
    sources: list[Record]  # the record of each valid command, in the same order


class HasSku(Protocol):
    @property
    def sku(self) -> str: ...


S = TypeVar("S", bound=HasSku)


def _reason(error: ValidationError) -> str:
    parts = []
    for detail in error.errors(include_url=False)[:5]:
        location = ".".join(str(p) for p in detail["loc"]) or "body"
        parts.append(f"{location}: {detail['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def decode(records: Sequence[Record], adapter: TypeAdapter[S]) -> Decoded[S]:
    """Validate each record against the contract; the key must name the record's SKU (per-SKU order)."""
    valid: list[S] = []
    invalid: list[Invalid] = []
    sources: list[Record] = []
    for record in records:
        if not record.value:
            invalid.append(Invalid(record, "empty record value"))
            continue
        try:
            command = adapter.validate_json(record.value)
        except ValidationError as error:
            invalid.append(Invalid(record, f"invalid command: {_reason(error)}"))
            continue
        # Exactly the normalised SKU: a key spelled another way would hash to another partition and break
        # the per-SKU order of commands.
        if record.key != command.sku.encode():
            key = (record.key or b"").decode("utf-8", "replace")
            invalid.append(Invalid(record, f"record key {key!r} does not match sku {command.sku!r}"))
            continue
        valid.append(command)
        sources.append(record)
    return Decoded(valid, invalid, sources)


async def dead_letter(sender: RawSender, dlq_topic: str, invalid: Sequence[Invalid]) -> None:
    """Publish every invalid record with its original key, value and header bytes (repeated keys too),
    plus the reason and origin; returns once the broker acknowledged all of them, raises otherwise."""
    acks = []
    for item in invalid:
        record = item.record
        headers = [
            *record.headers,
            (REASON_HEADER, item.reason[:2000].encode()),
            (ORIGIN_TOPIC_HEADER, record.topic.encode()),
            (ORIGIN_PARTITION_HEADER, str(record.partition).encode()),
            (ORIGIN_OFFSET_HEADER, str(record.offset).encode()),
        ]
        acks.append(await sender.send(dlq_topic, record.value, record.key, headers=headers))
    await asyncio.gather(*acks)
