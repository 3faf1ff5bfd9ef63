"""Per-record decoding and dead-lettering, shared by every command worker.

One bad record must never fail its batch: each record is validated on its own, and a bad one goes to the
dead-letter topic with its original bytes, key and headers, plus the reason and its origin.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiokafka.errors import MessageSizeTooLargeError
from pydantic import TypeAdapter, ValidationError

from infra.kafka import DLQ_TOPIC_MAX_BYTES, record_size

T = TypeVar("T")

REASON_HEADER = "x-dlq-reason"
ORIGIN_TOPIC_HEADER = "x-origin-topic"
ORIGIN_PARTITION_HEADER = "x-origin-partition"
ORIGIN_OFFSET_HEADER = "x-origin-offset"
# A record too large for the DLQ travels by reference: these headers, the first KiB of its value and of its
# headers; `invmon dlq replay` fetches the original from its origin while retention lasts.
BY_REFERENCE_HEADER = "x-dlq-by-reference"
ORIGIN_SIZE_HEADER = "x-origin-size"
ORIGIN_SHA256_HEADER = "x-origin-sha256"
PREVIEW_BYTES = 1024
REASON_CHARS = 2000


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
    command_id: uuid.UUID | None = None  # known when the command decoded; else read from the value if it can


@dataclass(frozen=True, slots=True)
class Sent:
    """One dead letter the DLQ acknowledged."""

    invalid: Invalid
    by_reference: bool

    def identity(self) -> tuple[uuid.UUID | None, str | None]:
        """(command_id, actor) for the command status: the decoded id when there is one, else what the value
        still names; the actor, so that only the sender (and admins) read it."""
        command_id, actor = readable_identity(self.invalid.record.value)
        return self.invalid.command_id or command_id, actor


def readable_identity(value: bytes | None) -> tuple[uuid.UUID | None, str | None]:
    """The `command_id` and `actor` a record's value names, each None where it names none (one parse)."""
    if not value or len(value) > 1_048_576:
        return None, None
    try:
        body = json.loads(value)
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    try:
        command_id: uuid.UUID | None = uuid.UUID(str(body["command_id"]))
    except (ValueError, KeyError, TypeError):
        command_id = None
    actor = body.get("actor")
    return command_id, actor if isinstance(actor, str) and len(actor) <= 200 else None


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
    # The adapter's validator itself: TypeAdapter.validate_json only passes its defaults on, at ~0.3 us
    # per record.
    validate = adapter.validator.validate_json
    for record in records:
        if not record.value:
            invalid.append(Invalid(record, "empty record value"))
            continue
        try:
            command: S = validate(record.value)
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


def _dlq_headers(item: Invalid) -> list[tuple[str, bytes]]:
    record = item.record
    return [
        (REASON_HEADER, item.reason[:REASON_CHARS].encode()),
        (ORIGIN_TOPIC_HEADER, record.topic.encode()),
        (ORIGIN_PARTITION_HEADER, str(record.partition).encode()),
        (ORIGIN_OFFSET_HEADER, str(record.offset).encode()),
    ]


def by_reference(item: Invalid) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The value and headers of a reference to a record: its first KiB, its size and sha256."""
    record = item.record
    value = record.value or b""
    kept: list[tuple[str, bytes]] = []
    budget = PREVIEW_BYTES
    for name, header in record.headers:
        budget -= len(name) + len(header)
        if budget < 0:
            break
        kept.append((name, header))
    noted = Invalid(record, f"{item.reason} [by reference: {len(value)} bytes]", item.command_id)
    return value[:PREVIEW_BYTES], [
        *kept,
        *_dlq_headers(noted),
        (BY_REFERENCE_HEADER, b"true"),
        (ORIGIN_SIZE_HEADER, str(len(value)).encode()),
        (ORIGIN_SHA256_HEADER, hashlib.sha256(value).hexdigest().encode()),
    ]


async def dead_letter(
    sender: RawSender, dlq_topic: str, invalid: Sequence[Invalid], *, max_bytes: int = DLQ_TOPIC_MAX_BYTES
) -> list[Sent]:
    """Publish every invalid record with its original key, value and header bytes (repeated keys too),
    plus the reason and origin; a record that cannot travel in full (larger than `max_bytes`, the DLQ
    producer's request size, or refused by the broker as too large) goes by reference. Returns once the
    broker acknowledged all of them, raises otherwise."""
    acks: list[tuple[Invalid, bool, Awaitable[Any]]] = []
    for item in invalid:
        record = item.record
        headers = [*record.headers, *_dlq_headers(item)]
        if record_size(record.key, record.value, headers) <= max_bytes:
            acks.append(
                (item, False, await sender.send(dlq_topic, record.value, record.key, headers=headers))
            )
        else:
            value, headers = by_reference(item)
            acks.append((item, True, await sender.send(dlq_topic, value, record.key, headers=headers)))
    results = await asyncio.gather(*(ack for _, _, ack in acks), return_exceptions=True)
    sent: list[Sent] = []
    for (item, referenced, _), result in zip(acks, results, strict=True):
        if isinstance(result, MessageSizeTooLargeError) and not referenced:
            # Larger on the wire than the estimate said (the broker's limit, not ours): a reference fits.
            value, headers = by_reference(item)
            await (await sender.send(dlq_topic, value, item.record.key, headers=headers))
            referenced = True
        elif isinstance(result, BaseException):
            raise result
        sent.append(Sent(item, referenced))
    return sent
