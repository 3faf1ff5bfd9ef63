"""The worker's background offset commits: in batch order, one at a time, spaced, merged meanwhile."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from workers.pipeline.consumer import OffsetCommitter

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)


def record(partition: int, offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord("t", partition, offset, 0, 0, None, b"{}", None, 0, 2, [])


class Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.landed = asyncio.Event()

    def assignment(self) -> set[TopicPartition]:
        return {TP0, TP1}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        self.landed.set()


async def test_batches_applied_during_the_interval_are_committed_together_after_it() -> None:
    consumer = Consumer()
    committer = OffsetCommitter("stock", interval_s=0.2)
    committer.commit(consumer, [record(0, 4), record(1, 9)])  # type: ignore[arg-type]
    await consumer.landed.wait()
    assert consumer.commits == [{TP0: 5, TP1: 10}]
    committer.commit(consumer, [record(0, 5)])  # type: ignore[arg-type]
    committer.commit(consumer, [record(0, 6), record(1, 10)])  # type: ignore[arg-type]
    assert len(consumer.commits) == 1  # still inside the interval
    await committer.flush()
    assert consumer.commits == [{TP0: 5, TP1: 10}, {TP0: 7, TP1: 11}]


async def test_revoked_partitions_are_left_out() -> None:
    consumer = Consumer()
    consumer.assignment = lambda: {TP1}  # type: ignore[method-assign]
    committer = OffsetCommitter("stock")
    committer.commit(consumer, [record(0, 4), record(1, 2)])  # type: ignore[arg-type]
    await committer.flush()
    assert consumer.commits == [{TP1: 3}]
