"""Partitions that wait (an outage, contention) are paused with back-off, so the others keep flowing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

log = structlog.get_logger("invmon.worker")

# The back-off of a waiting partition: doubling from the first to the last, reset once it moves.
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0


class PartitionGate:
    """Seeks a waiting partition back to its first unresolved record and pauses it; a timer resumes it.
    The consumer keeps fetching every other partition meanwhile (aiokafka fetches nothing for a paused
    one, and a seek drops what it had prefetched). A rebalance forgets pauses; the new owner starts from the
    last commit, which never passes an unresolved record."""

    def __init__(self, worker: str) -> None:
        self._worker = worker
        self._delay: dict[TopicPartition, float] = {}

    def hold(self, consumer: AIOKafkaConsumer, first_unresolved: dict[TopicPartition, int]) -> None:
        loop = asyncio.get_running_loop()
        assigned = consumer.assignment()
        for tp, offset in first_unresolved.items():
            if tp not in assigned:
                continue
            delay = min(self._delay.get(tp, BACKOFF_FIRST_S / 2) * 2, BACKOFF_MAX_S)
            self._delay[tp] = delay
            consumer.seek(tp, offset)
            consumer.pause(tp)
            loop.call_later(delay, self._resume, consumer, tp)
            log.info("partition_waiting", worker=self._worker, partition=tp.partition, offset=offset, s=delay)

    def moved(self, records: Iterable[ConsumerRecord[Any, Any]]) -> None:
        """These records' partitions moved on: their back-off starts afresh next time. Nothing to do (and
        nothing built per record) while no partition waits."""
        if self._delay:
            for record in records:
                self._delay.pop(TopicPartition(record.topic, record.partition), None)

    def _resume(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        if tp in consumer.assignment():
            consumer.resume(tp)
