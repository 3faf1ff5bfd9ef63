"""The notifier's Kafka side: each batch of events becomes delivery rows in one transaction; only then do
the offsets move. A redelivered event finds its (event, subscription) rows already there."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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
from workers.pipeline.consumer import batch_subscriber, current_message
from workers.pipeline.failures import is_outage

log = structlog.get_logger("invmon.notifier")

EVENTS_SEEN = Counter("invmon_notifier_events_total", "Events read from the event stream.", ["outcome"])
DELIVERIES_CREATED = Counter("invmon_notifier_deliveries_created_total", "Delivery rows created.")
OUTAGE_ATTEMPTS = 8
OTHER_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Decoded:
    facts: EventFacts
    sku: str
    payload: str
    record: ConsumerRecord[Any, Any] | None = None
    # The event's own time partitions its deliveries: fixed per event, so a redelivery meets its claim.
    event_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record that yields no deliveries, kept by reference in notifier_skipped_events."""

    record: ConsumerRecord[Any, Any]
    reason: str


def _decode(record: ConsumerRecord[Any, Any]) -> Decoded | str:
    """The routing facts of one event record, or why it is not one of our events."""
    try:
        text = bytes(record.value).decode()
        event = json.loads(text)
        event_type, sku = event["type"], event["sku"]
        if not isinstance(event_type, str) or not isinstance(sku, str) or not sku:
            return "type and sku must be non-empty strings"
        location = event.get("location")
        facts = EventFacts(
            UUID(str(event["event_id"])),
            event_type,
            sku,
            None,
            location if isinstance(location, str) else None,
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        return repr(error)[:200]
    return Decoded(facts, facts.sku, text, record, event_time(event.get("occurred_at"), record.timestamp))


def event_time(occurred_at: object, record_ms: int) -> datetime:
    """The event's occurred_at, else its record's timestamp: both are the same on every redelivery."""
    if isinstance(occurred_at, str):
        with contextlib.suppress(ValueError):
            at = datetime.fromisoformat(occurred_at)
            if at.tzinfo is not None:
                return at.astimezone(UTC)
    return datetime.fromtimestamp(record_ms / 1000, UTC)


def decode(record: ConsumerRecord[Any, Any]) -> Decoded | None:
    """The routing facts of one event record; None (logged, counted) if it is not one of our events."""
    decoded = _decode(record)
    if isinstance(decoded, str):
        _skipped("undecodable", Skipped(record, decoded))
        return None
    return decoded


def _skipped(outcome: str, skipped: Skipped) -> None:
    EVENTS_SEEN.labels(outcome).inc()
    record = skipped.record
    log.warning(
        f"{outcome}_event",
        reason=skipped.reason[:500],
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
    )


async def store(engine: AsyncEngine, events: Sequence[Decoded]) -> int:
    """Match and insert in one transaction; the item's name and category are read in it too."""
    async with command_log.transaction(engine) as pg:
        subscriptions = await notify_repo.enabled_filters(pg)
        if not subscriptions or not events:
            return 0
        known = await notify_repo.items(pg, sorted({e.sku for e in events}))
        facts = [
            EventFacts(
                e.facts.event_id,
                e.facts.event_type,
                e.sku,
                known.get(e.sku, ("", None))[1],
                e.facts.location,
            )
            for e in events
        ]
        filters = [
            Filter(
                s.id,
                frozenset(s.event_types),
                frozenset(s.skus),
                frozenset(s.categories),
                frozenset(s.locations),
            )
            for s in subscriptions
        ]
        payloads = {e.facts.event_id: e.payload for e in events}
        times = {e.facts.event_id: e.event_at for e in events}
        rows = [
            NewDelivery(
                f.event_id,
                subscription_id,
                f.event_type,
                f.sku,
                known[f.sku][0] if f.sku in known else None,
                payloads[f.event_id],
                times[f.event_id],
            )
            for f, subscription_id in route(facts, filters)
        ]
        return await notify_repo.insert_deliveries(pg, rows)


async def store_with_retry(engine: AsyncEngine, events: Sequence[Decoded]) -> int:
    """An outage is retried with back-off (8 attempts; then the batch is nacked and comes again, so the
    consumer waits without spinning). Any other failure gets 3 attempts, then is raised to be narrowed
    down: it is probably this batch's fault."""
    delay, failures = 0.05, 0
    for attempt in itertools.count(1):
        try:
            return await store(engine, events)
        except Exception as error:
            failures += not is_outage(error)
            if attempt >= OUTAGE_ATTEMPTS or failures >= OTHER_ATTEMPTS:
                raise
            log.info("store_retry", attempt=attempt, error=repr(error)[:300])
        await asyncio.sleep(delay * (0.5 + random.random()))  # jitter against a herd of notifiers
        delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


async def store_isolating(engine: AsyncEngine, events: Sequence[Decoded]) -> tuple[int, list[Skipped]]:
    """The batch in one transaction; if it keeps failing for a reason other than an outage, one event per
    transaction, in order: the events that still fail alone are skipped with the reason, the rest stored.
    An outage raises (the batch is nacked and waits)."""
    try:
        return await store_with_retry(engine, events), []
    except Exception as error:
        if is_outage(error):
            raise
        log.warning("event_batch_failing_narrowing", events=len(events), error=repr(error)[:300])
    created, skipped = 0, []
    for event in events:
        try:
            created += await store_with_retry(engine, [event])
        except Exception as error:
            if is_outage(error) or event.record is None:
                raise
            skipped.append(Skipped(event.record, f"{type(error).__name__}: {error}"))
    return created, skipped


async def record_skipped(engine: AsyncEngine, skipped: Sequence[Skipped]) -> None:
    rows = [
        notify_repo.SkippedRecord(
            s.record.topic,
            s.record.partition,
            s.record.offset,
            None if s.record.key is None else bytes(s.record.key),
            bytes(s.record.value or b""),
            s.reason,
        )
        for s in skipped
    ]
    async for attempt in stamina.retry_context(on=is_outage, attempts=8, wait_initial=0.05, wait_max=5.0):
        with attempt:
            async with command_log.transaction(engine) as pg:
                await notify_repo.insert_skipped(pg, rows)


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
            events: list[Decoded] = []
            skipped: list[Skipped] = []
            for record in records:
                decoded = _decode(record)
                if isinstance(decoded, str):
                    skipped.append(Skipped(record, decoded))
                    _skipped("undecodable", skipped[-1])
                else:
                    events.append(decoded)
            created, refused = await store_isolating(engine(), events)
            for one in refused:
                _skipped("refused", one)
            if skipped or refused:
                await record_skipped(engine(), [*skipped, *refused])
        except BaseException:
            await message.nack()
            raise
        await message.ack()
        EVENTS_SEEN.labels("read").inc(len(records))
        DELIVERIES_CREATED.inc(created)
