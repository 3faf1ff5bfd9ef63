"""The notifier's Kafka side: each batch of events becomes delivery rows in one transaction; only then do
the offsets move. A redelivered event finds its (event, subscription) rows already there."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import stamina
import structlog
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.topics import EVENTS
from db import command_log, notify_repo
from db.notify_repo import NewDelivery
from infra.settings import Settings
from workers.notifier.matching import EventFacts, Filter, route
from workers.pipeline.consumer import RETRYABLE, batch_subscriber, current_message

log = structlog.get_logger("invmon.notifier")

EVENTS_SEEN = Counter("invmon_notifier_events_total", "Events read from the event stream.", ["outcome"])
DELIVERIES_CREATED = Counter("invmon_notifier_deliveries_created_total", "Delivery rows created.")


@dataclass(frozen=True, slots=True)
class Decoded:
    facts: EventFacts
    sku: str
    payload: str


def decode(record: ConsumerRecord[Any, Any]) -> Decoded | None:
    """The routing facts of one event record; None (logged, counted) if it is not one of our events."""
    try:
        text = bytes(record.value).decode()
        event = json.loads(text)
        facts = EventFacts(UUID(str(event["event_id"])), str(event["type"]), str(event["sku"]), None)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        EVENTS_SEEN.labels("undecodable").inc()
        log.warning(
            "undecodable_event",
            reason=repr(error)[:200],
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        return None
    return Decoded(facts, facts.sku, text)


async def store(engine: AsyncEngine, events: Sequence[Decoded]) -> int:
    """Match and insert in one transaction; the item's name and category are read in it too."""
    async with command_log.transaction(engine) as pg:
        subscriptions = await notify_repo.enabled_filters(pg)
        if not subscriptions or not events:
            return 0
        known = await notify_repo.items(pg, sorted({e.sku for e in events}))
        facts = [
            EventFacts(e.facts.event_id, e.facts.event_type, e.sku, known.get(e.sku, ("", None))[1])
            for e in events
        ]
        filters = [
            Filter(s.id, frozenset(s.event_types), frozenset(s.skus), frozenset(s.categories))
            for s in subscriptions
        ]
        payloads = {e.facts.event_id: e.payload for e in events}
        rows = [
            NewDelivery(
                f.event_id,
                subscription_id,
                f.event_type,
                f.sku,
                known[f.sku][0] if f.sku in known else None,
                payloads[f.event_id],
            )
            for f, subscription_id in route(facts, filters)
        ]
        return await notify_repo.insert_deliveries(pg, rows)


async def store_with_retry(engine: AsyncEngine, events: Sequence[Decoded]) -> int:
    """Bounded back-off: a redelivery after a nack would otherwise spin against a database that is down."""
    async for attempt in stamina.retry_context(on=RETRYABLE, attempts=8, wait_initial=0.05, wait_max=5.0):
        with attempt:
            return await store(engine, events)
    raise RuntimeError("retry loop ended without a result")


def register(broker: KafkaBroker, settings: Settings, engine: Any) -> None:
    """`engine` is a callable returning the lifespan's engine: nothing connects at registration."""

    @batch_subscriber(
        broker,
        EVENTS.name,
        group_id=settings.notifier_consumer_group,
        max_records=settings.worker_max_records,
        batch_timeout_ms=settings.notifier_batch_timeout_ms,
        title="notifier",
        description="Turns events into email and webhook deliveries for matching subscriptions.",
    )
    async def on_events(body: list[bytes]) -> None:
        message = current_message(broker)
        raw = message.raw_message
        records = tuple(raw) if isinstance(raw, tuple | list) else (raw,)
        try:
            events = [d for d in (decode(r) for r in records) if d is not None]
            created = await store_with_retry(engine(), events)
        except BaseException:
            await message.nack()
            raise
        await message.ack()
        EVENTS_SEEN.labels("read").inc(len(records))
        DELIVERIES_CREATED.inc(created)
