"""The operations reads against the real database and broker. Database checks run inside a transaction
that is rolled back, so they set up exactly the rows they count and leave nothing behind."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts.topics import STOCK_COMMANDS
from db import ops_reads
from db.dead_letter_repo import category
from infra.consumer_lag import consumer_lag
from infra.settings import Settings
from tests.integration.helpers import run_id
from tests.integration.kafka_support import commit_offsets, private_topic

pytestmark = [pytest.mark.stack, pytest.mark.timeout(60)]


@pytest.fixture
async def tx(db: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    transaction = db.transaction()
    await transaction.start()
    try:
        yield db
    finally:
        await transaction.rollback()


async def test_outbox_backlog_counts_unpublished_and_ages_the_oldest(tx: asyncpg.Connection) -> None:
    await tx.execute("UPDATE outbox SET published_at = clock_timestamp() WHERE published_at IS NULL")
    assert await ops_reads.outbox_backlog(tx) == ops_reads.OutboxBacklog(0, None)

    now = datetime.now(UTC)
    for age_s, published in ((120, False), (30, False), (600, True)):
        await tx.execute(
            """
            INSERT INTO outbox (event_id, event_type, channel, sku, payload, created_at, published_at)
            VALUES ($1, 'stock_changed', 'inventory', 'OPS-1', '{}'::jsonb, $2, $3)
            """,
            uuid.uuid4(),
            now - timedelta(seconds=age_s),
            now if published else None,
        )
    backlog = await ops_reads.outbox_backlog(tx)
    assert backlog.unpublished == 2
    assert backlog.oldest_age_s is not None
    assert 120 <= backlog.oldest_age_s < 180


async def test_dead_letters_group_by_bounded_category(tx: asyncpg.Connection) -> None:
    await tx.execute("DELETE FROM dead_letters")
    reasons = [
        "empty record value",
        "invalid command: body: Invalid JSON: expected value at line 1 column 1",
        "invalid command: quantity: Input should be greater than 0",
        "invalid command: sku: String should have at most 64 characters",
        "record key 'a' does not match sku 'A'",
        "refused by PostgreSQL (22003): value out of range",
        "failed: ZeroDivisionError: division by zero",
        "something nobody wrote yet",
    ]
    for offset, reason in enumerate(reasons):
        await tx.execute(
            """
            INSERT INTO dead_letters (topic, partition, "offset", reason, at, by_reference)
            VALUES ('t', 0, $1, $2, clock_timestamp(), false)
            """,
            offset,
            reason,
        )
    counted = await ops_reads.dead_letters_by_reason(tx)
    assert counted == {
        "empty": 1,
        "undecodable": 1,
        "invalid": 2,
        "key_mismatch": 1,
        "refused": 1,
        "failed": 1,
        "other": 1,
    }
    # The SQL and the Python classifier agree (the workers' counter label uses the latter).
    assert sum(1 for r in reasons if category(r) == "invalid") == 2
    assert {category(r) for r in reasons} == set(counted)


async def _subscription(tx: asyncpg.Connection, name: str, kind: str, *, enabled: bool) -> uuid.UUID:
    sid = uuid.uuid4()
    await tx.execute(
        """
        INSERT INTO notification_subscriptions (id, name, kind, recipients, url, secret, enabled)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        """,
        sid,
        name,
        kind,
        ["ops@example.com", "oncall@example.com"] if kind == "email" else [],
        "https://hooks.example.com/x" if kind == "webhook" else None,
        "whsec-test" if kind == "webhook" else None,
        enabled,
    )
    return sid


async def _delivery(
    tx: asyncpg.Connection, sid: uuid.UUID, status: str, *, attempts: int = 0, error: str | None = None
) -> None:
    await tx.execute(
        """
        INSERT INTO notification_deliveries
            (event_id, subscription_id, event_type, sku, payload, status, attempts, last_error,
             next_attempt_at)
        VALUES ($1, $2, 'stock_changed', 'OPS-1', '{}'::jsonb, $3::text, $4, $5,
                CASE WHEN $3::text = 'pending' THEN clock_timestamp() END)
        """,
        uuid.uuid4(),
        sid,
        status,
        attempts,
        error,
    )


async def test_deliveries_by_channel_status_and_the_failing_ones(tx: asyncpg.Connection) -> None:
    await tx.execute("DELETE FROM notification_attempts")
    await tx.execute("DELETE FROM notification_deliveries")
    mail = await _subscription(tx, "ops mail", "email", enabled=True)
    hook = await _subscription(tx, "erp hook", "webhook", enabled=False)
    await _delivery(tx, mail, "delivered", attempts=1)
    await _delivery(tx, mail, "delivered", attempts=1)
    await _delivery(tx, mail, "pending")
    await _delivery(tx, hook, "pending", attempts=2, error="HTTP 503")
    await _delivery(tx, hook, "failed", attempts=8, error="subscription disabled")

    assert await ops_reads.deliveries_by_channel_status(tx) == {
        ("email", "delivered"): 2,
        ("email", "pending"): 1,
        ("webhook", "pending"): 1,
        ("webhook", "failed"): 1,
    }
    failing = await ops_reads.failing_deliveries(tx, limit=10)
    assert sorted((f.last_error, f.attempts) for f in failing) == [
        ("HTTP 503", 2),
        ("subscription disabled", 8),
    ]
    assert all(f.subscription == "erp hook" and f.channel == "webhook" for f in failing)
    assert all(f.target == "https://hooks.example.com/x" and f.disabled for f in failing)
    assert len(await ops_reads.failing_deliveries(tx, limit=1)) == 1


async def test_business_gauges_and_table_sizes(tx: asyncpg.Connection) -> None:
    before = await ops_reads.items_by_alert_state(tx)
    marker = run_id()
    for n, state in enumerate(["ok", "low", "low", "out"]):
        await tx.execute(
            "INSERT INTO items (sku, name, alert_state) VALUES ($1, 'ops item', $2)",
            f"OPS-{marker}-{n}",
            state,
        )
    after = await ops_reads.items_by_alert_state(tx)
    assert {s: after.get(s, 0) - before.get(s, 0) for s in ("ok", "low", "out")} == {
        "ok": 1,
        "low": 2,
        "out": 1,
    }

    pending = await ops_reads.pending_price_approvals(tx)
    for status in ("pending", "pending", "approved"):
        await tx.execute(
            """
            INSERT INTO price_changes
                (change_id, sku, currency, selling_price, change_type, why, status, requested_by,
                 requested_at)
            VALUES ($1, $2, 'EUR', 10, 'set', 'test', $3, 'tester', clock_timestamp())
            """,
            uuid.uuid4(),
            f"OPS-{marker}-0",
            status,
        )
    assert await ops_reads.pending_price_approvals(tx) == pending + 2

    sizes = await ops_reads.table_bytes(tx)
    assert {"items", "outbox", "processed_commands", "dead_letters"} <= set(sizes)
    assert all(size > 0 for size in sizes.values()), sizes
    # A partitioned table's partitions count under its parent's name, and the partitions are not listed.
    await tx.execute("CREATE TABLE ops_parted (id bigint, pad text) PARTITION BY RANGE (id)")
    await tx.execute("CREATE TABLE ops_parted_1 PARTITION OF ops_parted FOR VALUES FROM (0) TO (100)")
    await tx.execute("CREATE TABLE ops_parted_2 PARTITION OF ops_parted FOR VALUES FROM (100) TO (200)")
    await tx.execute("INSERT INTO ops_parted SELECT g, repeat('x', 500) FROM generate_series(0, 199) g")
    one = int(await tx.fetchval("SELECT pg_total_relation_size('ops_parted_1')"))
    two = int(await tx.fetchval("SELECT pg_total_relation_size('ops_parted_2')"))
    sizes = await ops_reads.table_bytes(tx)
    assert sizes["ops_parted"] == one + two > 0
    assert "ops_parted_1" not in sizes


@pytest.fixture
async def lag_topic(stack: Settings) -> AsyncIterator[str]:
    async with private_topic(stack) as name:
        yield name


async def test_consumer_lag_from_committed_offsets_to_the_log_end(stack: Settings, lag_topic: str) -> None:
    group = f"invmon-test-lag-{run_id().lower()}"
    p0, p1 = TopicPartition(lag_topic, 0), TopicPartition(lag_topic, 1)
    await commit_offsets(stack, group, {p0: 0, p1: 0})
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(lag_topic, json.dumps({"n": n}).encode(), partition=0)
    finally:
        await producer.stop()

    lags = await consumer_lag(stack, [group])
    assert [(x.group, x.topic, x.partition, x.committed, x.end, x.lag) for x in lags] == [
        (group, lag_topic, 0, 0, 3, 3),
        (group, lag_topic, 1, 0, 0, 0),
    ]
    await commit_offsets(stack, group, {p0: 2})
    assert [x.lag for x in await consumer_lag(stack, [group])] == [1, 0]
    # Listed with every group when none is named, next to our own groups.
    everything = await consumer_lag(stack)
    assert {(x.group, x.partition, x.lag) for x in everything if x.group == group} == {
        (group, 0, 1),
        (group, 1, 0),
    }
    assert stack.stock_consumer_group in {x.group for x in everything}


async def test_a_group_that_never_committed_lags_by_the_whole_log(stack: Settings) -> None:
    # A stock worker that never started: nothing committed, so the broker alone does not know it reads
    # the stock topic; we do.
    never = stack.model_copy(update={"stock_consumer_group": f"invmon-never-{run_id().lower()}"})
    lags = await consumer_lag(never, [never.stock_consumer_group])
    assert {x.topic for x in lags} == {STOCK_COMMANDS.name}
    assert len(lags) == stack.kafka_partitions
    reader = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    await reader.start()
    try:
        tps = [TopicPartition(STOCK_COMMANDS.name, x.partition) for x in lags]
        ends, starts = await reader.end_offsets(tps), await reader.beginning_offsets(tps)
    finally:
        await reader.stop()
    assert all(x.committed is None for x in lags)
    assert [x.lag for x in lags] == [ends[tp] - starts[tp] for tp in tps]
