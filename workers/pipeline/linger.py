"""Adaptive lingering: at a steady moderate rate a worker's batches are small (~5 commands at 1,000/s, one
per ~5 ms transaction), and every batch pays the same fixed costs in the worker, PostgreSQL and Kafka (a
transaction, its round trips, a fetch, the outbox relay's round it wakes). Waiting a few milliseconds for
more records to arrive makes batches larger and fewer; it is only worth it while records are arriving.

The policy is pure (time in, wait out); `grow` does the waiting and takes what arrived meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


@dataclass(slots=True)
class LingerPolicy:
    """How long to wait before handling a batch of `size` records taken at `now` (seconds, monotonic).

    The arrival rate is the batch's size over the time since the previous batch was taken. No wait when
    lingering is off, when the batch already has `target` records, or when fewer than one more record is
    expected within `max_wait_s` (idle or sparse traffic: a lone command never waits for company that is
    not coming). Otherwise the time the rate needs to fill the batch up to `target`, at most `max_wait_s`.
    """

    max_wait_s: float
    target: int
    _last_taken: float | None = field(default=None, init=False)

    def wait_s(self, now: float, size: int) -> float:
        last, self._last_taken = self._last_taken, now
        if self.max_wait_s <= 0 or size >= self.target or last is None or now <= last:
            return 0.0
        rate = size / (now - last)
        if rate * self.max_wait_s < 1:
            return 0.0
        wait = min(self.max_wait_s, (self.target - size) / rate)
        # What arrives during the wait belongs to this batch: the next rate is measured from its end.
        self._last_taken = now + wait
        return wait


def merged(
    records: Sequence[ConsumerRecord[Any, Any]], more: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]
) -> tuple[ConsumerRecord[Any, Any], ...]:
    """The batch with the records taken after it, each partition's records together and in offset order
    (the shape getmany hands over, which isolation's per-partition split and bisection expect)."""
    parts: dict[TopicPartition, list[ConsumerRecord[Any, Any]]] = {}
    for record in records:
        parts.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
    for tp, later in more.items():
        parts.setdefault(tp, []).extend(later)
    return tuple(r for part in parts.values() for r in part)


async def grow(
    consumer: AIOKafkaConsumer,
    policy: LingerPolicy,
    records: tuple[ConsumerRecord[Any, Any], ...],
    max_records: int,
    now: float,
) -> tuple[ConsumerRecord[Any, Any], ...]:
    """The batch taken at `now` (perf_counter), grown by what the consumer fetched while the policy's
    wait ran (nothing is committed or skipped here: the records taken join this batch, are applied and
    committed with it)."""
    wait = policy.wait_s(now, len(records))
    if wait <= 0:
        return records
    await asyncio.sleep(wait)
    room = max_records - len(records)
    if room <= 0:
        return records
    more = await consumer.getmany(timeout_ms=0, max_records=room)
    return merged(records, more) if more else records
