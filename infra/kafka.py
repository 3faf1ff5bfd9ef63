"""Kafka client setup shared by the edge and the workers: the safe settings live here, once."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy

from infra.settings import Settings

# Every producer: wait for all in-sync replicas, and let the broker drop retried duplicates.
PRODUCER_ACKS = "all"
PRODUCER_IDEMPOTENT = True


@dataclass(frozen=True, slots=True)
class ConsumerSafety:
    """Consumer options for a command log: offsets move only after our own commit, start at the beginning."""

    ack_policy: AckPolicy = AckPolicy.MANUAL
    auto_offset_reset: str = "earliest"


CONSUMER_SAFETY = ConsumerSafety()


def make_broker(settings: Settings, *, client_id: str, description: str | None = None) -> KafkaBroker:
    """A broker whose producer is safe for commands and events. Connects only when started."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        client_id=client_id,
        acks=PRODUCER_ACKS,
        enable_idempotence=PRODUCER_IDEMPOTENT,
        allow_auto_create_topics=False,
        linger_ms=2,
        logger=logging.getLogger(f"invmon.{client_id}"),
        description=description,
    )
