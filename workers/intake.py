"""Per-record decoding and dead-lettering, shared by every command worker.

One bad record must never fail its batch: each record is validated on its own, and a bad one goes to the
dead-letter topic with its original bytes, key and headers, plus the reason and its origin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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


class Publisher(Protocol):
    async def publish(
        self, message: Any, topic: str, *, key: bytes | None, headers: dict[str, str]
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class Invalid:
    record: Record
    reason: str


@dataclass(frozen=True, slots=True)
class Decoded(Generic[T]):
    valid: list[T]
    invalid: list[Invalid]


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
    for record in records:
        if not record.value:
            invalid.append(Invalid(record, "empty record value"))
            continue
        try:
            command = adapter.validate_json(record.value)
        except ValidationError as error:
            invalid.append(Invalid(record, f"invalid command: {_reason(error)}"))
            continue
        key = (record.key or b"").decode("utf-8", "replace").strip().upper()
        if key != command.sku:
            invalid.append(Invalid(record, f"record key {key!r} does not match sku {command.sku!r}"))
            continue
        valid.append(command)
    return Decoded(valid, invalid)


async def dead_letter(publisher: Publisher, dlq_topic: str, invalid: Sequence[Invalid]) -> None:
    """Publish every invalid record and wait for all acks; raises if any publish fails."""

    async def send(item: Invalid) -> None:
        record = item.record
        headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
        headers.update(
            {
                REASON_HEADER: item.reason[:2000],
                ORIGIN_TOPIC_HEADER: record.topic,
                ORIGIN_PARTITION_HEADER: str(record.partition),
                ORIGIN_OFFSET_HEADER: str(record.offset),
            }
        )
        await publisher.publish(record.value or b"", dlq_topic, key=record.key, headers=headers)

    await asyncio.gather(*(send(item) for item in invalid))
