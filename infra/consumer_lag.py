"""How far each consumer group is behind the log end, per partition: one read for the metrics, `invmon
status` and the admin operations page.

It reads what the broker knows (the group's committed offsets and each partition's log end), never what a
consumer believes about itself, so a stopped or wedged worker shows its lag growing. That is also why the
process exporting `invmon_consumer_lag` is the outbox relay, which consumes no Kafka topic
(workers/outbox_relay/ops_metrics.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.topics import EVENTS, PRICE_COMMANDS, STOCK_COMMANDS
from infra.kafka import client_security
from infra.settings import Settings

REQUEST_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing here (it starts at the earliest offset)
    end: int
    lag: int


def known_groups(settings: Settings) -> dict[str, tuple[str, ...]]:
    """Our consumer groups and the topics each reads: a group that has committed nothing yet (a worker that
    never started) still shows its lag, which the broker alone could not tell."""
    return {
        settings.stock_consumer_group: (STOCK_COMMANDS.name,),
        settings.price_consumer_group: (PRICE_COMMANDS.name,),
        settings.notifier_consumer_group: (EVENTS.name,),
    }


def lag_of(committed: int | None, start: int, end: int) -> int:
    """Records the group has still to read: from its committed offset, or from the earliest one still in
    the log (our consumers reset to earliest); a committed offset the retention overtook counts from the
    log start too."""
    position = start if committed is None else max(committed, start)
    return max(end - position, 0)


async def consumer_lag(settings: Settings, groups: Sequence[str] | None = None) -> list[PartitionLag]:
    """Lag per (group, topic, partition), sorted. `groups=None`: our groups plus every consumer group the
    cluster lists. Raises on a broker error (callers decide how to show it)."""
    known = known_groups(settings)
    security = client_security(settings)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS, **security
    )
    async with AsyncExitStack() as stack:
        stack.push_async_callback(admin.close)
        await admin.start()
        # The admin client has no ListOffsets; a consumer without a group id reads log ends, joins nothing.
        offsets = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            **security,
        )
        stack.push_async_callback(offsets.stop)
        await offsets.start()
        if groups is None:
            listed = await admin.list_consumer_groups()
            names = sorted({*known, *(str(g[0]) for g in listed if g[1] in ("consumer", ""))})
        else:
            names = list(groups)
        committed: dict[str, dict[TopicPartition, int | None]] = {}
        for group in names:
            found = await admin.list_consumer_group_offsets(group)
            committed[group] = {tp: (m.offset if m.offset >= 0 else None) for tp, m in found.items()}
        topics = {
            *(t for g in names for t in known.get(g, ())),
            *(tp.topic for c in committed.values() for tp in c),
        }
        existing = await _partitions(admin, topics)
        for group in names:
            # Offsets a group kept for a topic since deleted have no log end to compare with.
            committed[group] = {tp: at for tp, at in committed[group].items() if tp in existing}
            for tp in existing:
                if tp.topic in known.get(group, ()):
                    committed[group].setdefault(tp, None)
        partitions = sorted({tp for per in committed.values() for tp in per})
        if not partitions:
            return []
        ends = await offsets.end_offsets(partitions)
        starts = await offsets.beginning_offsets(partitions)
    return [
        PartitionLag(group, tp.topic, tp.partition, at, ends[tp], lag_of(at, starts[tp], ends[tp]))
        for group in names
        for tp, at in sorted(committed[group].items())
    ]


async def _partitions(admin: AIOKafkaAdminClient, topics: set[str]) -> set[TopicPartition]:
    """The partitions of those of `topics` that exist."""
    if not topics:
        return set()
    return {
        TopicPartition(str(meta["topic"]), int(p["partition"]))
        for meta in await admin.describe_topics(sorted(topics))
        if int(meta["error_code"]) == 0
        for p in meta["partitions"]
    }
