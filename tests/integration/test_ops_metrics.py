"""The outbox relay's operations gauges, read from its /metrics while the test changes the database and
the broker behind its back. The test holds the relay's leader lock, so the relay under test is a standby:
it publishes nothing (an unpublished row stays unpublished) yet exports every gauge."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from contracts.topics import STOCK_COMMANDS
from db.outbox_repo import RELAY_LOCK_KEY
from infra.consumer_lag import consumer_lag
from infra.settings import Settings
from tests.e2e.notify_support import free_port
from tests.integration.helpers import database, run_id, wait_until
from tests.integration.kafka_support import commit_offsets, private_topic
from tests.processes import Process, start, wait_ready
from workers.outbox_relay.ops_metrics import OpsMetrics

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
async def standby(stack: Settings) -> AsyncIterator[asyncpg.Connection]:
    """Holds the relay lock: a relay started now stays a standby."""
    async with database(stack) as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", RELAY_LOCK_KEY)
        yield conn


@pytest.fixture
async def lag_topic(stack: Settings) -> AsyncIterator[str]:
    async with private_topic(stack) as name:
        yield name


@pytest.fixture
def never_group() -> str:
    return f"invmon-never-{run_id().lower()}"


@pytest.fixture
def relay(
    stack: Settings, standby: asyncpg.Connection, never_group: str, tmp_path: Path
) -> Iterator[Process]:
    port = free_port()
    env = {
        "INVMON_OUTBOX_RELAY_PORT": str(port),
        "INVMON_OPS_METRICS_INTERVAL_S": "0.3",
        # A stock worker that never ran: its group has committed nothing.
        "INVMON_STOCK_CONSUMER_GROUP": never_group,
    }
    process = start("outbox_relay", port, tmp_path, env)
    try:
        wait_ready(process)
        yield process
    finally:
        process.stop()


async def test_outbox_backlog_and_the_oldest_rows_age(relay: Process, standby: asyncpg.Connection) -> None:
    db = standby
    # What an earlier test left unpublished would be the oldest row: publish it (no relay leads now).
    await db.execute("UPDATE outbox SET published_at = clock_timestamp() WHERE published_at IS NULL")
    event_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO outbox (event_id, event_type, channel, sku, payload, created_at)
        VALUES ($1, 'stock_changed', 'inventory', 'OPS-METRICS', '{}'::jsonb, $2)
        """,
        event_id,
        datetime.now(UTC) - timedelta(seconds=90),
    )
    try:
        samples = await wait_until(
            lambda: scrape(relay.port),
            lambda s: value(s, "invmon_outbox_backlog") == 1,
            within=15,
            what="the backlog gauge to count the unpublished row",
        )
        age = value(samples, "invmon_outbox_oldest_unpublished_age_seconds")
        assert age is not None
        assert 90 <= age < 150
    finally:
        await db.execute("UPDATE outbox SET published_at = clock_timestamp() WHERE event_id = $1", event_id)
    samples = await wait_until(
        lambda: scrape(relay.port),
        lambda s: value(s, "invmon_outbox_backlog") == 0,
        within=15,
        what="the backlog gauge to drop to 0",
    )
    assert value(samples, "invmon_outbox_oldest_unpublished_age_seconds") == 0


async def test_consumer_lag_of_a_group_that_stopped_consuming(
    stack: Settings, relay: Process, lag_topic: str, never_group: str
) -> None:
    group = f"invmon-test-lag-{run_id().lower()}"
    await commit_offsets(stack, group, {TopicPartition(lag_topic, 0): 0, TopicPartition(lag_topic, 1): 0})
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        for n in range(4):
            await producer.send_and_wait(lag_topic, json.dumps({"n": n}).encode(), partition=0)
    finally:
        await producer.stop()
    lag = {"group": group, "topic": lag_topic}
    samples = await wait_until(
        lambda: scrape(relay.port),
        lambda s: value(s, "invmon_consumer_lag", **lag, partition="0") == 4,
        within=15,
        what="the lag gauge to show the 4 records nobody consumed",
    )
    assert value(samples, "invmon_consumer_lag", **lag, partition="1") == 0
    # The group catches up.
    await commit_offsets(stack, group, {TopicPartition(lag_topic, 0): 4})
    await wait_until(
        lambda: scrape(relay.port),
        lambda s: value(s, "invmon_consumer_lag", **lag, partition="0") == 0,
        within=15,
        what="the lag gauge to drop to 0",
    )
    # A worker that never committed lags by the whole stock topic, on every partition.
    expected = {
        x.partition: x.lag
        for x in await consumer_lag(
            stack.model_copy(update={"stock_consumer_group": never_group}), [never_group]
        )
    }
    exported = {
        p: value(
            samples, "invmon_consumer_lag", group=never_group, topic=STOCK_COMMANDS.name, partition=str(p)
        )
        for p in range(stack.kafka_partitions)
    }
    assert exported == {p: float(n) for p, n in expected.items()}


async def test_business_gauges_deliveries_and_table_sizes(
    relay: Process, standby: asyncpg.Connection
) -> None:
    db = standby
    marker = run_id()
    out_before = int(await db.fetchval("SELECT count(*) FROM items WHERE is_active AND alert_state = 'out'"))
    pending_before = int(await db.fetchval("SELECT count(*) FROM price_changes WHERE status = 'pending'"))
    skus = [f"OPSM-{marker}-{n}" for n in range(3)]
    for sku in skus:
        await db.execute("INSERT INTO items (sku, name, alert_state) VALUES ($1, 'ops', 'out')", sku)
    await db.execute(
        """
        INSERT INTO price_changes
            (change_id, sku, currency, selling_price, change_type, why, status, requested_by, requested_at)
        VALUES ($1, $2, 'EUR', 10, 'set', 'test', 'pending', 'tester', clock_timestamp())
        """,
        uuid.uuid4(),
        skus[0],
    )
    try:
        samples = await wait_until(
            lambda: scrape(relay.port),
            lambda s: (
                value(s, "invmon_items_by_alert_state", state="out") == out_before + 3
                and value(s, "invmon_price_approvals_pending") == pending_before + 1
            ),
            within=15,
            what="the business gauges to count the new rows",
        )
    finally:
        await db.execute("DELETE FROM price_changes WHERE sku = ANY($1::text[])", skus)
        await db.execute("DELETE FROM items WHERE sku = ANY($1::text[])", skus)
    # Every channel and status is a series from the start, 0 or not.
    for channel in ("email", "webhook"):
        for status in ("pending", "delivered", "failed"):
            assert value(samples, "invmon_notify_deliveries", channel=channel, status=status) is not None
    items_bytes = value(samples, "invmon_table_bytes", table="items")
    assert items_bytes is not None
    assert items_bytes > 0
    assert value(samples, "invmon_ops_metrics_errors_total", source="postgres") == 0
    assert value(samples, "invmon_ops_metrics_errors_total", source="kafka") == 0


async def test_a_failing_source_is_counted_and_the_loop_goes_on(stack: Settings) -> None:
    closed = free_port()
    broken = stack.model_copy(
        update={"kafka_bootstrap": f"127.0.0.1:{closed}", "ops_metrics_interval_s": 0.5}
    )
    errors = {
        s: REGISTRY.get_sample_value("invmon_ops_metrics_errors_total", {"source": s}) or 0.0
        for s in ("postgres", "kafka")
    }
    ops = OpsMetrics(broken, f"postgresql://invmon:invmon@127.0.0.1:{closed}/invmon")
    await ops.refresh()  # returns: an outage is counted, not raised
    after = {
        s: REGISTRY.get_sample_value("invmon_ops_metrics_errors_total", {"source": s})
        for s in ("postgres", "kafka")
    }
    assert after == {s: errors[s] + 1 for s in errors}
