"""An outbox event the event topic refuses for good does not hold the events after it: it is dead-lettered
by reference to invmon.events.v1.dlq and its row marked failed with the reason; the relay goes on. Two
ways to be refused: over the producer's max_request_size (aiokafka refuses it before sending), and over
the topic's max.message.bytes (the broker refuses the batch; the producer is idempotent, so this also
checks that its sequence numbers survive a refused batch)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from redis.asyncio import Redis

from contracts.event_dead_letters import EventDeadLetter
from contracts.topics import EVENTS, EVENTS_DLQ
from db.command_log import OutboxRow
from infra import live_redis
from infra.settings import Settings
from tests.e2e.notify_support import free_port
from tests.integration.helpers import database, wait_until
from tests.integration.test_outbox_relay_failover import write
from tests.processes import Process, start, wait_ready

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


def row(sku: str, seq: int, pad: int = 0) -> OutboxRow:
    event_id = uuid.uuid4()
    payload = {"event_id": str(event_id), "sku": sku, "type": "stock_changed", "seq": seq, "pad": "x" * pad}
    return OutboxRow(event_id, "stock_changed", "inventory", sku, json.dumps(payload), datetime.now(UTC))


@asynccontextmanager
async def relay(stack: Settings, tmp_path: Path) -> AsyncIterator[Process]:
    port = free_port()  # a fixed offset can meet an ephemeral port on a busy box
    process = start("outbox_relay", port, tmp_path, {"INVMON_OUTBOX_RELAY_PORT": str(port)})
    try:
        wait_ready(process)
        yield process
    finally:
        process.stop()


@asynccontextmanager
async def reader(stack: Settings, topic: str) -> AsyncIterator[AIOKafkaConsumer]:
    """Reads `topic` from its current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False, fetch_max_bytes=8 << 20
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(stack.kafka_partitions)]
        consumer.assign(partitions)
        for tp, offset in (await consumer.end_offsets(partitions)).items():
            consumer.seek(tp, offset)
        yield consumer
    finally:
        await consumer.stop()


async def drain(consumer: AIOKafkaConsumer, sku: str, want: int) -> list[Any]:
    seen: list[Any] = []

    async def fill() -> None:
        while len(seen) < want:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                seen.extend(r for r in records if r.key == sku.encode())

    await asyncio.wait_for(fill(), 30)
    return seen


@asynccontextmanager
async def topic_limit(stack: Settings, max_bytes: int) -> AsyncIterator[None]:
    """The event topic's max.message.bytes lowered for the block, then back to the broker default."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    resource = ConfigResourceType.TOPIC
    try:
        await admin.alter_configs(
            [ConfigResource(resource, EVENTS.name, {"max.message.bytes": str(max_bytes)})]
        )
        yield
    finally:
        # An empty set of configs resets them (AlterConfigs replaces the topic's whole override set).
        await admin.alter_configs([ConfigResource(resource, EVENTS.name, {})])
        await admin.close()


@pytest.mark.parametrize(
    ("limit", "pad"),
    [(None, 2 << 20), ("before", 100 << 10), ("while", 100 << 10)],
    ids=["over-max-request-size", "over-topic-limit", "over-topic-limit-lowered-while-running"],
)
async def test_a_refused_event_is_dead_lettered_and_the_rest_published(
    stack: Settings, tmp_path: Path, limit: str | None, pad: int
) -> None:
    """`before`: the relay reads the topic's limit when it starts leading and refuses the event itself.
    `while`: the broker refuses it; the relay replaces its producer and refuses it from then on."""
    sku = f"ISO-{uuid.uuid4().hex[:8].upper()}"
    rows = [row(sku, i) for i in range(5)] + [row(sku, 5, pad)] + [row(sku, i) for i in range(6, 12)]
    big = rows[5]
    good = [str(r.event_id) for r in rows if r is not big]
    redis = Redis.from_url(stack.redis_url)
    async with contextlib.AsyncExitStack() as scope:
        scope.push_async_callback(redis.aclose)
        if limit == "before":
            await scope.enter_async_context(topic_limit(stack, 64 << 10))
        events = await scope.enter_async_context(reader(stack, EVENTS.name))
        dlq = await scope.enter_async_context(reader(stack, EVENTS_DLQ.name))
        await scope.enter_async_context(relay(stack, tmp_path))
        db = await scope.enter_async_context(database(stack))
        if limit == "while":
            await scope.enter_async_context(topic_limit(stack, 64 << 10))
        await write(stack, rows[:3])  # a round before the refused one
        await wait_until(
            lambda: db.fetchval("SELECT count(*) FROM outbox WHERE sku = $1 AND published_at IS NULL", sku),
            lambda n: n == 0,
            within=20,
            what="the first rows published",
        )
        await write(stack, rows[3:])
        state = await wait_until(
            lambda: db.fetch(
                "SELECT event_id, published_at, failed_at, failed_reason FROM outbox WHERE sku = $1", sku
            ),
            lambda found: len(found) == len(rows) and all(r["published_at"] for r in found),
            within=30,
            what="every row published or failed",
        )
        by_id = {str(r["event_id"]): r for r in state}
        refused = by_id[str(big.event_id)]
        assert refused["failed_at"] is not None
        assert refused["failed_reason"].startswith("kafka: MessageSizeTooLargeError"), refused[
            "failed_reason"
        ]
        assert all(by_id[e]["failed_at"] is None for e in good)

        on_topic = [json.loads(r.value)["event_id"] for r in await drain(events, sku, len(good))]
        assert list(dict.fromkeys(on_topic)) == good  # in order, the refused one left out

        [letter_record] = await drain(dlq, sku, 1)
        letter = EventDeadLetter.model_validate_json(letter_record.value)
        # As the outbox holds it (jsonb text: PostgreSQL's key order, not the writer's).
        stored = await db.fetchrow(
            "SELECT id, payload::text AS text FROM outbox WHERE event_id = $1", big.event_id
        )
        raw = stored["text"].encode()
        assert (letter.outbox_id, letter.event_id, letter.sku) == (stored["id"], big.event_id, sku)
        assert (letter.size, letter.sha256) == (len(raw), hashlib.sha256(raw).hexdigest())
        assert letter.head == stored["text"][:1024]
        assert letter.reason in refused["failed_reason"]
        assert dict(letter_record.headers)["x-dlq-reason"].decode() == letter.reason

        # Redis took it (its limits are far higher): the live channel lost nothing.
        history = await live_redis.LiveRedis(redis).history("inventory", 0)
        assert str(big.event_id) in {json.loads(m.payload)["event_id"] for m in history if m.sku == sku}

        # The relay goes on: a row written afterwards is published too.
        after = row(sku, 12)
        await write(stack, [after])
        [record] = await drain(events, sku, 1)
        assert json.loads(record.value)["event_id"] == str(after.event_id)
