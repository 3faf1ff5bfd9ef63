"""Kafka client setup shared by the edge and the workers: the safe settings live here, once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy

from infra.settings import Settings

# Every producer: wait for all in-sync replicas, and let the broker drop retried duplicates.
PRODUCER_ACKS = "all"
PRODUCER_IDEMPOTENT = True
# Chooses a record's partition from its key (murmur2, as Java clients do). The edge's producer uses it, and
# so does the edge's batch path, which fills one record batch per partition itself.
PARTITIONER = DefaultPartitioner()
# Record batch size (the default is 16 KiB): the edge's batch intake fills whole batches, ~1,500 commands each
# at this size; below the broker's default message.max.bytes (1 MiB).
BATCH_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class ConsumerSafety:
    """Consumer options for a command log: offsets move only after our own commit, start at the beginning."""

    ack_policy: AckPolicy = AckPolicy.MANUAL
    auto_offset_reset: Literal["earliest"] = "earliest"


CONSUMER_SAFETY = ConsumerSafety()


def make_broker(
    settings: Settings, *, client_id: str, description: str | None = None, linger_ms: int = 2
) -> KafkaBroker:
    """A broker whose producer is safe for commands and events. Connects only when started."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=client_id,
        acks=PRODUCER_ACKS,
        enable_idempotence=PRODUCER_IDEMPOTENT,
        allow_auto_create_topics=False,
        linger_ms=linger_ms,
        logger=logging.getLogger(f"invmon.{client_id}"),
        description=description,
    )


def raw_producer(settings: Settings, *, client_id: str) -> AIOKafkaProducer:
    """A plain aiokafka producer with the same safe settings, for records whose header bytes must pass
    through untouched (FastStream's publish takes headers as a str dict). Started by its lifespan."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks=PRODUCER_ACKS,
        enable_idempotence=PRODUCER_IDEMPOTENT,
        linger_ms=2,
        partitioner=PARTITIONER,
        max_batch_size=BATCH_BYTES,
    )


def unsafe_settings(broker: KafkaBroker) -> list[str]:
    """What makes this started broker unsafe for a command log (empty: safe).

    Reads the aiokafka objects FastStream built, so a changed default upstream shows up at start-up rather
    than as lost commands. Private attributes are read on purpose: they are the only record of what the
    clients were really configured with.
    """
    problems: list[str] = []
    for subscriber in broker.subscribers:
        args = getattr(subscriber, "_connection_args", {})
        if args.get("enable_auto_commit") is not False:
            problems.append(f"{subscriber}: auto-commit is on (offsets would move before processing)")
        if args.get("auto_offset_reset") != CONSUMER_SAFETY.auto_offset_reset:
            problems.append(f"{subscriber}: auto_offset_reset is {args.get('auto_offset_reset')!r}")
        consumer = getattr(subscriber, "consumer", None)
        if consumer is not None and getattr(consumer, "_enable_auto_commit", True):
            problems.append(f"{subscriber}: the running consumer auto-commits")
    producer = getattr(getattr(getattr(broker.config, "producer", None), "_producer", None), "producer", None)
    if producer is None:
        problems.append("no producer: the broker is not connected")
    else:
        if getattr(producer._sender, "_acks", None) != -1:
            problems.append(f"producer acks={producer._sender._acks!r}, want all (-1)")
        if producer._txn_manager is None:
            problems.append("producer is not idempotent")
    return problems


def require_safe(broker: KafkaBroker) -> None:
    problems = unsafe_settings(broker)
    if problems:
        raise RuntimeError("unsafe Kafka client settings: " + "; ".join(problems))
