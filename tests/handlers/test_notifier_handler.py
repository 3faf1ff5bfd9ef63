"""The notifier's event subscriber in memory (TestKafkaBroker) over the real PostgreSQL: events become one
delivery per matching subscription, with the item's name; a record that is not an event does not stop the
others; a redelivered event adds nothing. Delivery itself is proven against real Kafka in tests/e2e."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.topics import EVENTS
from db.engine import make_engine
from infra.kafka import make_broker, unsafe_settings
from infra.settings import Settings
from workers.notifier import consumer

pytestmark = pytest.mark.stack


@pytest.fixture
async def engine(stack: Settings) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(stack.database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def broker(stack: Settings, engine: AsyncEngine) -> AsyncIterator[KafkaBroker]:
    broker = make_broker(stack, client_id="notifier-handler-test")
    consumer.register(broker, stack, lambda: engine)
    async with TestKafkaBroker(broker) as test_broker:
        yield test_broker


async def test_events_become_deliveries_for_matching_subscriptions(
    broker: KafkaBroker, db: asyncpg.Connection
) -> None:
    sku = f"NH-{uuid.uuid4().hex[:8].upper()}"
    await db.execute("INSERT INTO items (sku, name, category) VALUES ($1, 'Handler lamp', 'lighting')", sku)
    wanted, other_type, other_category = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for sub_id, types, categories in (
        (wanted, ["low_stock_detected"], ["lighting"]),
        (other_type, ["out_of_stock"], []),
        (other_category, [], ["kitchen"]),
    ):
        await db.execute(
            """
            INSERT INTO notification_subscriptions (id, name, event_types, skus, categories, kind, recipients)
            VALUES ($1, 'handler', $2, $3, $4, 'email', '{ops@example.com}')
            """,
            sub_id,
            types,
            [sku],
            categories,
        )
    event = {"event_id": str(uuid.uuid4()), "type": "low_stock_detected", "sku": sku, "available": 1}
    await broker.publish(b"{not an event", EVENTS.name, key=sku.encode())
    await broker.publish(json.dumps(event).encode(), EVENTS.name, key=sku.encode())
    await broker.publish(json.dumps(event).encode(), EVENTS.name, key=sku.encode())  # redelivered

    rows = await db.fetch(
        "SELECT subscription_id, item_name, payload->>'available' AS available FROM notification_deliveries "
        "WHERE sku = $1",
        sku,
    )
    assert [(r["subscription_id"], r["item_name"], r["available"]) for r in rows] == [
        (wanted, "Handler lamp", "1")
    ]
    await db.execute(
        "DELETE FROM notification_subscriptions WHERE id = ANY($1::uuid[])",
        [wanted, other_type, other_category],
    )
    await db.execute("DELETE FROM items WHERE sku = $1", sku)


async def test_notifier_clients_are_safe_for_an_event_log(stack: Settings, engine: AsyncEngine) -> None:
    broker = make_broker(stack, client_id="notifier-safety-test")
    # A group of its own: this started consumer must not take partitions from a running notifier.
    settings = stack.model_copy(update={"notifier_consumer_group": f"safety-{uuid.uuid4()}"})
    consumer.register(broker, settings, lambda: engine)
    await broker.start()
    try:
        assert unsafe_settings(broker) == []
    finally:
        await broker.stop()
