"""Adaptive lingering: a wait only while records arrive steadily, bounded, and the records taken meanwhile
join the batch in partition and offset order."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from workers.pipeline.linger import LingerPolicy, grow, merged

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)


def record(partition: int, offset: int) -> ConsumerRecord[Any, Any]:
    return ConsumerRecord("t", partition, offset, 0, 0, None, b"{}", None, 0, 2, [])


def offsets(records: tuple[ConsumerRecord[Any, Any], ...]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in records]


def test_the_first_batch_never_waits() -> None:
    assert LingerPolicy(max_wait_s=0.005, target=100).wait_s(10.0, 1) == 0.0


@pytest.mark.parametrize(
    ("gap_s", "size", "expected"),
    [
        (1.0, 1, 0.0),  # 1/s: a lone command after a quiet spell
        (0.1, 1, 0.0),  # 10/s
        (0.006, 1, 0.0),  # ~167/s: fewer than one more record expected within 5 ms
        (0.004, 1, 0.005),  # 250/s: more are coming; the bound
        (0.005, 5, 0.005),  # 1,000/s, batches of 5: the bound
        (0.005, 100, 0.0),  # the batch is already at the target
        (0.001, 95, 5 / 95_000),  # 95,000/s: the 5 missing records take ~53 us
    ],
)
def test_the_wait_follows_the_rate_and_the_batch_size(gap_s: float, size: int, expected: float) -> None:
    policy = LingerPolicy(max_wait_s=0.005, target=100)
    policy.wait_s(1.0, 1)
    assert policy.wait_s(1.0 + gap_s, size) == pytest.approx(expected)


def test_off_never_waits() -> None:
    policy = LingerPolicy(max_wait_s=0.0, target=100)
    policy.wait_s(1.0, 5)
    assert policy.wait_s(1.001, 5) == 0.0


def test_the_rate_after_a_wait_counts_from_the_end_of_the_wait() -> None:
    policy = LingerPolicy(max_wait_s=0.005, target=100)
    policy.wait_s(1.0, 1)
    assert policy.wait_s(1.004, 4) == pytest.approx(0.005)  # taken again at 1.009, after the wait
    # One record 1 ms after the wait (1,000/s); counted from 1.004 it would look like ~167/s.
    assert policy.wait_s(1.010, 1) == pytest.approx(0.005)


def test_merged_keeps_each_partitions_records_together_in_offset_order() -> None:
    batch = (record(0, 4), record(1, 9))
    more = {TP1: [record(1, 10)], TP0: [record(0, 5), record(0, 6)], TopicPartition("t", 2): [record(2, 0)]}
    assert offsets(merged(batch, more)) == [(0, 4), (0, 5), (0, 6), (1, 9), (1, 10), (2, 0)]


class Consumer:
    def __init__(self, more: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        self.more = more
        self.calls: list[tuple[int, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        self.calls.append((timeout_ms, max_records))
        return self.more


async def test_grow_takes_what_arrived_while_it_waited_up_to_max_records() -> None:
    consumer = Consumer({TP0: [record(0, 5)]})
    policy = LingerPolicy(max_wait_s=0.001, target=100)
    batch = (record(0, 4), record(1, 9))
    assert await grow(consumer, policy, batch, 500, 1.0) == batch  # the first
    assert consumer.calls == []  # no wait, no fetch
    grown = await grow(consumer, policy, batch, 3, 1.001)  # 2,000/s
    assert offsets(grown) == [(0, 4), (0, 5), (1, 9)]
    assert consumer.calls == [(0, 1)]  # room for one more record
