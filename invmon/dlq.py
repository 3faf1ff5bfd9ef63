"""Read and replay dead-letter topics. Replay sends the original bytes, key and headers back to the topic
the record came from (after the contract or the sender was fixed); a record that is still bad returns to
the DLQ with its new reason, so nothing is lost either way. A record dead-lettered by reference (too large
for the DLQ) is fetched from its origin topic/partition/offset while retention lasts, checked against its
sha256, and replayed from there."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from infra.kafka import client_security, raw_producer
from infra.settings import Settings
from invmon.stack import kafka_admin
from workers.intake import (
    BY_REFERENCE_HEADER,
    ORIGIN_OFFSET_HEADER,
    ORIGIN_PARTITION_HEADER,
    ORIGIN_SHA256_HEADER,
    ORIGIN_SIZE_HEADER,
    ORIGIN_TOPIC_HEADER,
    REASON_HEADER,
)

REPLAYED_HEADER = "x-replayed-from"
_DLQ_HEADERS = {REASON_HEADER, ORIGIN_TOPIC_HEADER, ORIGIN_PARTITION_HEADER, ORIGIN_OFFSET_HEADER}
# Up to what the DLQ producer may send: a record fetched from its origin by reference can be this large.
_REPLAY_MAX_REQUEST = 64 * 1024 * 1024


class OriginGone(LookupError):
    """The original of a by-reference letter is no longer in its topic, or is not what was dead-lettered."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    @property
    def reason(self) -> str:
        return self.headers.get(REASON_HEADER, b"").decode("utf-8", "replace")

    @property
    def by_reference(self) -> bool:
        return self.headers.get(BY_REFERENCE_HEADER) == b"true"

    @property
    def size(self) -> int:
        """The original value's size (a by-reference letter holds only its first KiB)."""
        raw = self.headers.get(ORIGIN_SIZE_HEADER)
        return int(raw) if raw else len(self.value)

    @property
    def origin(self) -> str:
        h = self.headers
        parts = (h.get(ORIGIN_TOPIC_HEADER), h.get(ORIGIN_PARTITION_HEADER), h.get(ORIGIN_OFFSET_HEADER))
        return ":".join(p.decode() if p else "?" for p in parts)


def _letter(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    return DeadLetter(record.partition, record.offset, record.key, record.value or b"", dict(record.headers))


async def read(settings: Settings, topic: str) -> AsyncIterator[DeadLetter]:
    """Every record in the DLQ topic up to its end at the time of the call, partition by partition."""
    security = client_security(settings)
    info = (await kafka_admin.describe(settings.kafka_bootstrap, [topic], security)).get(topic)
    if info is None:
        raise LookupError(f"topic {topic} does not exist")
    partitions = [TopicPartition(topic, p) for p in range(info.partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **security,
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        # Explicit seeks: seek_to_beginning() on a group-less consumer was seen to leave it at the end.
        for tp, start in (await consumer.beginning_offsets(partitions)).items():
            consumer.seek(tp, start)
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    if record.offset < ends[tp]:
                        yield _letter(record)
    finally:
        await consumer.stop()


async def fetch_original(settings: Settings, letter: DeadLetter) -> ConsumerRecord[bytes, bytes]:
    """The record a by-reference letter points at, from its origin topic, checked against its sha256."""
    h = letter.headers
    topic = h[ORIGIN_TOPIC_HEADER].decode()
    tp = TopicPartition(topic, int(h[ORIGIN_PARTITION_HEADER]))
    offset = int(h[ORIGIN_OFFSET_HEADER])
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="none",
        max_partition_fetch_bytes=_REPLAY_MAX_REQUEST,
        **client_security(settings),
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not first <= offset < end:
            raise OriginGone(
                f"{topic}:{tp.partition}:{offset} is gone (retention); the topic holds {first}..{end}"
            )
        consumer.seek(tp, offset)
        while True:
            batch = await consumer.getmany(tp, timeout_ms=5000)
            for record in batch.get(tp, []):
                if record.offset != offset:
                    continue
                digest = hashlib.sha256(record.value or b"").hexdigest().encode()
                if digest != h.get(ORIGIN_SHA256_HEADER):
                    raise OriginGone(f"{topic}:{tp.partition}:{offset} does not match its sha256")
                return record
            if not batch:
                raise OriginGone(f"{topic}:{tp.partition}:{offset} could not be fetched")
    finally:
        await consumer.stop()


async def replay(settings: Settings, letters: Iterable[DeadLetter], *, dlq_topic: str) -> int:
    """Publish each letter back to its origin topic; returns how many were acknowledged by the broker."""
    # An original fetched by reference may be larger than any DLQ request.
    producer = raw_producer(
        settings, client_id="invmon-dlq-replay", dead_letters=True, max_request_size=_REPLAY_MAX_REQUEST
    )
    await producer.start()
    try:
        acks = []
        for letter in letters:
            origin = letter.headers.get(ORIGIN_TOPIC_HEADER)
            if not origin:
                raise ValueError(f"{dlq_topic}:{letter.partition}:{letter.offset} has no origin header")
            value, key = letter.value, letter.key
            headers = [(k, v) for k, v in letter.headers.items() if k not in _DLQ_HEADERS]
            if letter.by_reference:
                original = await fetch_original(settings, letter)
                value, key, headers = original.value, original.key, list(original.headers)
            headers.append((REPLAYED_HEADER, f"{dlq_topic}:{letter.partition}:{letter.offset}".encode()))
            acks.append(await producer.send(origin.decode(), value, key=key, headers=headers))
        for ack in acks:
            await ack
        return len(acks)
    finally:
        await producer.stop()
