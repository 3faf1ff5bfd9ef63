"""What the relay's destinations refuse for good, told apart from an outage: a refused event is isolated
(dead-lettered by reference, its row marked failed) and the rest move on; an outage fails the round."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from uuid import UUID

from aiokafka.errors import (
    InvalidProducerEpoch,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnknownProducerId,
)
from redis.exceptions import ResponseError

from contracts.event_dead_letters import EventDeadLetter
from db.outbox_repo import PendingEvent
from infra.kafka import record_size

# The producer's refusal of one record, whatever the state of the cluster: no retry can cure it. Anything
# else (no leader, timeouts, a broker down) is an outage: the round fails and is retried.
KAFKA_REFUSALS: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError,  # over the producer's max_request_size, or the topic's max.message.bytes
    RecordListTooLargeError,
    RecordTooLargeError,
)
# An idempotent producer whose batch the broker refused has a gap in its sequence numbers: every later
# batch to that partition fails with OutOfOrderSequenceNumber, for ever. Only a new producer (a new
# producer id) cures it.
PRODUCER_STUCK: tuple[type[Exception], ...] = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
)
# Redis error replies that mean Redis cannot take anything right now, not that it refuses this event.
REDIS_OUTAGE_REPLIES = (
    "OOM",
    "BUSY",
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "MISCONF",
    "TRYAGAIN",
    "CLUSTERDOWN",
)
# More than this under the limit, a value fits whatever its key (a SKU), headers and the batch's overhead;
# only closer to the limit is the exact size worth computing.
_SIZE_SLACK = 4096


class BrokerRefused(Exception):
    """The broker refused records (outbox id -> reason); the producer must be replaced."""

    def __init__(self, refusals: dict[int, str]) -> None:
        super().__init__(f"the broker refused outbox rows {sorted(refusals)}")
        self.refusals = refusals


@dataclass(frozen=True, slots=True)
class Refusal:
    event: PendingEvent
    destination: str  # kafka | redis
    reason: str


def reason_of(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]


def redis_refused(error: BaseException) -> bool:
    """An error reply to our script that is not one of Redis's "not now" replies: this input's fault."""
    return isinstance(error, ResponseError) and not str(error).startswith(REDIS_OUTAGE_REPLIES)


def oversize(body: bytes, key: bytes, headers: dict[str, str], max_bytes: int) -> str | None:
    """Why the record cannot go to the event topic (None: it can). Checked before sending: a record the
    broker refuses also stops the producer (PRODUCER_STUCK)."""
    if len(body) + len(key) + _SIZE_SLACK <= max_bytes:
        return None
    size = record_size(key, body, [(k, v.encode()) for k, v in headers.items()])
    if size <= max_bytes:
        return None
    return f"MessageSizeTooLargeError: the record is {size} bytes, over the {max_bytes} the event topic takes"


def dead_letter(event: PendingEvent, reason: str) -> bytes:
    """The reference the events' DLQ carries: it fits wherever the event did not."""
    raw = event.payload.encode()
    letter = EventDeadLetter(
        outbox_id=event.id,
        event_id=UUID(event.event_id),
        event_type=event.event_type,
        channel=event.channel,
        sku=event.sku,
        size=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        reason=reason,
        head=event.payload[:1024],
    )
    return letter.model_dump_json().encode()
