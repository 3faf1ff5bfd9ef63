"""Read and replay dead-letter topics. Replay sends the original bytes, key and headers back to the topic
the record came from (after the contract or the sender was fixed); a record that is still bad returns to
the DLQ with its new reason, so nothing is lost either way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from infra.kafka import raw_producer
from infra.settings import Settings
from invmon.stack import kafka_admin
from workers.intake import ORIGIN_OFFSET_HEADER, ORIGIN_PARTITION_HEADER, ORIGIN_TOPIC_HEADER, REASON_HEADER

REPLAYED_HEADER = "x-replayed-from"
_DLQ_HEADERS = {REASON_HEADER, ORIGIN_TOPIC_HEADER, ORIGIN_PARTITION_HEADER, ORIGIN_OFFSET_HEADER}


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
    def origin(self) -> str:
        h = self.headers
        parts = (h.get(ORIGIN_TOPIC_HEADER), h.get(ORIGIN_PARTITION_HEADER), h.get(ORIGIN_OFFSET_HEADER))
        return ":".join(p.decode() if p else "?" for p in parts)


def _letter(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    return DeadLetter(record.partition, record.offset, record.key, record.value or b"", dict(record.headers))


async def read(bootstrap: str, topic: str) -> AsyncIterator[DeadLetter]:
    """Every record in the DLQ topic up to its end at the time of the call, partition by partition."""
    info = (await kafka_admin.describe(bootstrap, [topic])).get(topic)
    if info is None:
        raise LookupError(f"topic {topic} does not exist")
    partitions = [TopicPartition(topic, p) for p in range(info.partitions)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
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


async def replay(settings: Settings, letters: Iterable[DeadLetter], *, dlq_topic: str) -> int:
    """Publish each letter back to its origin topic; returns how many were acknowledged by the broker."""
    producer = raw_producer(settings, client_id="invmon-dlq-replay")
    await producer.start()
    try:
        acks = []
        for letter in letters:
            origin = letter.headers.get(ORIGIN_TOPIC_HEADER)
            if not origin:
                raise ValueError(f"{dlq_topic}:{letter.partition}:{letter.offset} has no origin header")
            headers = [(k, v) for k, v in letter.headers.items() if k not in _DLQ_HEADERS]
            headers.append((REPLAYED_HEADER, f"{dlq_topic}:{letter.partition}:{letter.offset}".encode()))
            acks.append(await producer.send(origin.decode(), letter.value, key=letter.key, headers=headers))
        for ack in acks:
            await ack
        return len(acks)
    finally:
        await producer.stop()
