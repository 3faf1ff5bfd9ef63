"""A worker batch whose transaction rolls back produces no event anywhere: no outbox row, nothing on the
Kafka event stream, nothing on Redis pub/sub, no notification. The batch runs through the worker's own
`apply_batch` with the real stock session; a failure is injected right after the outbox rows are written,
inside the transaction. A later command for the same SKU, through the real worker and relay, is the
marker: events of one SKU leave in order, so anything from the rolled-back batch would come before it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.asyncio import Redis

from contracts.stock_commands import ReceiveStock, RegisterItem
from contracts.topics import EVENTS
from db import command_log
from db import writes as db_writes
from db.command_log import OutboxRow
from db.engine import make_engine
from db.writes import Write
from infra import live_redis
from infra.settings import Settings
from tests.e2e.support import new_sku
from tests.integration.helpers import pg_dsn
from tests.processes import Process
from workers.pipeline.batch import apply_batch
from workers.rules.alerts import AlertPolicy
from workers.stock_worker.apply import StockSession

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


class InjectedFailure(RuntimeError):
    pass


async def test_a_rolled_back_batch_publishes_no_event(
    pipeline: dict[str, Process],
    stack: Settings,
    edge: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sku = new_sku()
    redis = Redis.from_url(stack.redis_url)
    pubsub = redis.pubsub()
    await pubsub.psubscribe(live_redis.PUB_PATTERN)
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    engine = make_engine(stack.database_url)
    try:
        partitions = [TopicPartition(EVENTS.name, p) for p in range(stack.kafka_partitions)]
        consumer.assign(partitions)
        start = await consumer.end_offsets(partitions)
        for tp, offset in start.items():
            consumer.seek(tp, offset)

        now = datetime.now(UTC)
        envelope: dict[str, Any] = {"sku": sku, "issued_at": now, "actor": "test", "source": "tests"}
        commands = [
            RegisterItem(command_id=uuid.uuid4(), name="Doomed", initial_quantity=5, **envelope),
            ReceiveStock(command_id=uuid.uuid4(), quantity=3, **envelope),
        ]
        written: list[OutboxRow] = []
        build_outbox, send = command_log.insert_outbox, db_writes.send

        def recording_outbox(rows: list[OutboxRow]) -> Write | None:
            written.extend(rows)
            return build_outbox(rows)

        async def send_then_fail(pg: asyncpg.Connection, writes: Sequence[Write]) -> None:
            await send(pg, writes)
            assert await pg.fetchval("SELECT count(*) FROM outbox WHERE sku = $1", sku) == len(written)
            raise InjectedFailure("the batch fails after writing its outbox rows")

        monkeypatch.setattr(command_log, "insert_outbox", recording_outbox)
        monkeypatch.setattr(db_writes, "send", send_then_fail)
        with pytest.raises(InjectedFailure):
            await apply_batch(engine, StockSession(AlertPolicy(10)), commands, now)
        monkeypatch.undo()
        doomed = {str(row.event_id) for row in written}
        assert len(doomed) >= 2, "the batch wrote its events before failing"

        conn = await asyncpg.connect(pg_dsn(stack))
        try:
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE sku = $1", sku) == 0
            assert await conn.fetchval("SELECT count(*) FROM items WHERE sku = $1", sku) == 0
            ids = [c.command_id for c in commands]
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM processed_commands WHERE command_id = ANY($1::uuid[])", ids
                )
                == 0
            )
        finally:
            await conn.close()

        # The marker: a real command for the same SKU through the edge, worker and relay.
        response = await edge.post("/v1/items", json={"sku": sku, "name": "Marker", "initial_quantity": 1})
        assert response.status_code == 202, response.text

        async def kafka_until_marker() -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            while True:
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        if record.key == sku.encode():
                            seen.append(json.loads(record.value))
                if any(e["type"] == "item_registered" for e in seen):
                    return seen

        async def redis_until_marker() -> list[dict[str, Any]]:
            seen: list[dict[str, Any]] = []
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    continue
                event = json.loads(live_redis.parse_message(message["data"]).payload)
                if event.get("sku") == sku:
                    seen.append(event)
                    if event["type"] == "item_registered":
                        return seen

        on_kafka = await asyncio.wait_for(kafka_until_marker(), 30)
        on_redis = await asyncio.wait_for(redis_until_marker(), 30)
        assert {e["event_id"] for e in on_kafka} & doomed == set()
        assert {e["event_id"] for e in on_redis} & doomed == set()
        assert [e.get("name") for e in on_kafka if e["type"] == "item_registered"] == ["Marker"]
        assert [e.get("name") for e in on_redis if e["type"] == "item_registered"] == ["Marker"]
    finally:
        await consumer.stop()
        await pubsub.aclose()
        await redis.aclose()
        await engine.dispose()
