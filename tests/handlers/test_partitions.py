"""Time partitions against the real PostgreSQL: the migration keeps every row, maintenance drops expired
partitions but never one holding a row still needed, inserts never fail at a boundary, and exactly-once
holds across partitions. Migration and retention run in a database of their own (small spans, a clock
set by the test), so the shared test database keeps its partitions."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.stock_commands import STOCK_COMMAND_ADAPTER, StockCommand
from contracts.topics import ALL_TOPICS, EVENTS, PRICE_COMMANDS, STOCK_COMMANDS
from db import migrate, partitions
from db.engine import make_engine
from infra.kafka import read_topic_configs
from infra.settings import Settings
from invmon.stack import kafka_admin
from tests.handlers.conftest import dsn
from workers.pipeline.batch import apply_claiming
from workers.pipeline.maintenance import processed_retention_problem
from workers.rules.alerts import AlertPolicy
from workers.stock_worker.apply import StockSession

pytestmark = pytest.mark.stack

TABLES = ("outbox", "processed_commands", "notification_deliveries", "notification_attempts",
          "stock_ledger", "price_history")  # fmt: skip


@pytest.fixture
async def pg(scratch: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the scratch database, migrated to head."""
    await asyncio.to_thread(migrate.upgrade, scratch, "head")
    connection = await asyncpg.connect(dsn(scratch))
    try:
        yield connection
    finally:
        await connection.close()


SEED = """
INSERT INTO notification_subscriptions (id, name, kind, url, secret)
VALUES ('00000000-0000-0000-0000-000000000001', 's', 'webhook', 'http://127.0.0.1/', 'k');
INSERT INTO outbox (event_id, event_type, channel, sku, payload, created_at, published_at)
SELECT gen_random_uuid(), 'stock_changed', 'inventory', 'S' || i, jsonb_build_object('i', i),
       now() - i * interval '1 minute', CASE WHEN i % 3 = 0 THEN NULL ELSE now() END
FROM generate_series(1, 3000) i;
INSERT INTO processed_commands (command_id, command_type, sku, status, reason, applied_at, actor)
SELECT gen_random_uuid(), 'receive_stock', 'S' || i, 'applied', NULL, now() - i * interval '1 minute', 'a'
FROM generate_series(1, 3000) i;
INSERT INTO notification_deliveries (event_id, subscription_id, event_type, sku, payload, status)
SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'stock_changed', 'S' || i, '{}',
       CASE WHEN i % 2 = 0 THEN 'pending' ELSE 'delivered' END
FROM generate_series(1, 1000) i;
INSERT INTO notification_attempts (delivery_id, attempted_at, status_code, latency_ms, error, outcome)
SELECT id, now(), 200, 1.5, NULL, 'delivered' FROM notification_deliveries;
INSERT INTO stock_ledger (command_id, sku, delta, reason, actor, on_hand_after, reserved_after, created_at)
SELECT gen_random_uuid(), 'S' || i, i, 'receive', 'a', i, 0, now() - i * interval '1 hour'
FROM generate_series(1, 3000) i;
INSERT INTO price_history (change_id, command_id, sku, currency, new_price, selling_price, change_type,
                           requested_by, created_at)
SELECT gen_random_uuid(), gen_random_uuid(), 'S' || i, 'EUR', i, i, 'set', 'a', now() - i * interval '1 day'
FROM generate_series(1, 500) i;
"""


async def checksums(url: str, columns: dict[str, list[str]]) -> dict[str, tuple[int, str]]:
    """Per table: the row count and an md5 of every row's original columns, in a fixed order."""
    pg = await asyncpg.connect(dsn(url))
    try:
        out = {}
        for table in TABLES:
            cols = ", ".join(columns[table])
            out[table] = tuple(
                await pg.fetchrow(
                    f"SELECT count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), ''))"
                    f" FROM (SELECT {cols} FROM {table}) r"
                )
            )
        return out  # type: ignore[return-value]
    finally:
        await pg.close()


async def test_the_migration_keeps_every_row_and_downgrade_too(scratch: str) -> None:
    await asyncio.to_thread(migrate.upgrade, scratch, "0009")
    pg = await asyncpg.connect(dsn(scratch))
    try:
        await pg.execute(SEED)
        columns = {
            t: [
                r[0]
                for r in await pg.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = $1"
                    " ORDER BY ordinal_position",
                    t,
                )
            ]
            for t in TABLES
        }
    finally:
        await pg.close()
    before = await checksums(scratch, columns)
    assert all(count > 0 for count, _ in before.values())
    await asyncio.to_thread(migrate.upgrade, scratch, "head")
    assert await checksums(scratch, columns) == before
    pg = await asyncpg.connect(dsn(scratch))
    try:
        for table in TABLES:
            assert await pg.fetchval("SELECT relkind FROM pg_class WHERE relname = $1", table) == b"p"
        # The ids go on from the sequences the old tables used.
        next_id = await pg.fetchval(
            "INSERT INTO stock_ledger (command_id, sku, delta, reason, actor, on_hand_after, reserved_after)"
            " VALUES (gen_random_uuid(), 'X', 1, 'r', 'a', 1, 0) RETURNING id"
        )
        assert next_id == 3001
        await pg.execute("DELETE FROM stock_ledger WHERE id = 3001")
    finally:
        await pg.close()
    await asyncio.to_thread(migrate.downgrade, scratch, "0009")
    assert await checksums(scratch, columns) == before


def small(stack: Settings) -> Settings:
    return stack.model_copy(
        update={
            "partition_span_outbox_s": 60,
            "partition_span_processed_s": 60,
            "partition_span_notifications_s": 60,
            "retention_outbox_s": 120,
            "retention_processed_s": 120,
            "retention_notifications_s": 120,
        }
    )


async def names(pg: asyncpg.Connection, table: str) -> set[str]:
    return {p.name for p in await partitions.partitions(pg, table)}


async def maintain(pg: asyncpg.Connection, settings: Settings, now: datetime) -> partitions.RoundReport:
    return await partitions.maintain(pg, settings, now)


async def test_expired_partitions_are_dropped_but_never_a_needed_row(
    pg: asyncpg.Connection, stack: Settings
) -> None:
    settings = small(stack)
    # The legacy partitions reach up to the upgrade (now): without them the ranges can start earlier.
    for table in TABLES[:4]:
        await pg.execute(f"DROP TABLE {table}_legacy")
    t0 = partitions.floor(await pg.fetchval("SELECT now()"), 60) - timedelta(minutes=10)
    await maintain(pg, settings, t0)  # the ranges from ten minutes ago on
    a, b = t0 + timedelta(seconds=5), t0 + timedelta(seconds=65)  # two old partitions each
    await pg.execute(
        "INSERT INTO notification_subscriptions (id, name, kind, url, secret)"
        " VALUES ('00000000-0000-0000-0000-000000000001', 's', 'webhook', 'http://127.0.0.1/', 'k')"
    )
    for at, published in ((a, "now()"), (a, "NULL"), (b, "now()")):
        await pg.execute(
            "INSERT INTO outbox (event_id, event_type, channel, sku, payload, created_at, published_at)"
            f" VALUES (gen_random_uuid(), 't', 'inventory', 'S', '{{}}', $1, {published})",
            at,
        )
    # A command issued long ago but applied just now is still inside the window.
    for issued, applied in ((a, a), (b, datetime.now(UTC))):
        await pg.execute(
            "INSERT INTO processed_commands (command_id, command_type, sku, status, applied_at, actor,"
            " issued_at) VALUES (gen_random_uuid(), 'c', 'S', 'applied', $2, 'a', $1)",
            issued,
            applied,
        )
    for at, status in ((a, "pending"), (b, "delivered")):
        await pg.execute(
            "INSERT INTO notification_deliveries (event_id, subscription_id, event_type, sku, payload,"
            " status, event_at) VALUES (gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 't',"
            " 'S', '{}', $2, $1)",
            at,
            status,
        )
    for at in (a, b):
        await pg.execute(
            "INSERT INTO notification_attempts (delivery_id, attempted_at, latency_ms, outcome)"
            " VALUES (1, $1, 1, 'delivered')",
            at,
        )
    pa, pb = partitions.Range(t0, t0).name, partitions.Range(t0 + timedelta(seconds=60), t0).name
    now = t0 + timedelta(minutes=10)
    report = await maintain(pg, settings, now)
    # Outbox: the partition with an unpublished row stays, the published one goes.
    assert pa("outbox") in await names(pg, "outbox")
    assert pb("outbox") not in await names(pg, "outbox")
    assert await pg.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 1
    # Processed ids: the old claim goes, the one applied inside the window stays.
    assert pa("processed_commands") not in await names(pg, "processed_commands")
    assert pb("processed_commands") in await names(pg, "processed_commands")
    # Deliveries: the pending one keeps its partition; attempts expire by time alone.
    assert pa("notification_deliveries") in await names(pg, "notification_deliveries")
    assert pb("notification_deliveries") not in await names(pg, "notification_deliveries")
    assert await pg.fetchval("SELECT count(*) FROM notification_attempts") == 0
    assert pb("outbox") in report.dropped
    # Ranges ahead exist.
    upper = max(p.upper for p in await partitions.partitions(pg, "outbox") if p.upper is not None)
    assert upper >= now + timedelta(minutes=3)
    # Once published, the outbox row no longer holds its partition.
    await pg.execute("UPDATE outbox SET published_at = now()")
    await maintain(pg, settings, now)
    assert pa("outbox") not in await names(pg, "outbox")
    # The ledger is never dropped.
    assert "stock_ledger_legacy" in await names(pg, "stock_ledger")


async def test_an_insert_beyond_every_range_lands_in_default_and_moves_into_its_partition(
    pg: asyncpg.Connection, stack: Settings
) -> None:
    settings = small(stack)
    now = partitions.floor(await pg.fetchval("SELECT now()"), 60)
    await maintain(pg, settings, now)
    later = now + timedelta(hours=2, seconds=7)  # past the last range: no partition yet
    await pg.execute(
        "INSERT INTO outbox (event_id, event_type, channel, sku, payload, created_at)"
        " VALUES (gen_random_uuid(), 't', 'inventory', 'S', '{}', $1)",
        later,
    )
    assert await pg.fetchval("SELECT count(*) FROM outbox_default") == 1
    report = await maintain(pg, settings, now)
    assert report.in_default == {"outbox": 1}  # logged while it waits there
    report = await maintain(pg, settings, later)
    target = partitions.Range(partitions.floor(later, 60), later).name("outbox")
    assert target in report.created
    assert await pg.fetchval("SELECT count(*) FROM outbox_default") == 0
    assert await pg.fetchval(f"SELECT count(*) FROM {target}") == 1


async def test_expired_rows_keyed_before_every_range_leave_default_unless_still_needed(
    pg: asyncpg.Connection, stack: Settings
) -> None:
    settings = small(stack)
    for table in TABLES[:4]:  # without the legacy partitions, old keys have no range but DEFAULT
        await pg.execute(f"DROP TABLE {table}_legacy")
    now = partitions.floor(await pg.fetchval("SELECT now()"), 60)
    await maintain(pg, settings, now)
    ancient = datetime(2001, 1, 1, tzinfo=UTC)
    for published in ("now()", "NULL"):
        await pg.execute(
            "INSERT INTO outbox (event_id, event_type, channel, sku, payload, created_at, published_at)"
            f" VALUES (gen_random_uuid(), 't', 'inventory', 'S', '{{}}', $1, {published})",
            ancient,
        )
    for applied in (ancient, now):  # the second: a late record applied inside the window
        await pg.execute(
            "INSERT INTO processed_commands (command_id, command_type, sku, status, applied_at, actor,"
            " issued_at) VALUES (gen_random_uuid(), 'c', 'S', 'applied', $2, 'a', $1)",
            ancient,
            applied,
        )
    report = await maintain(pg, settings, now)
    assert report.purged == {"outbox": 1, "processed_commands": 1}
    assert await pg.fetchval("SELECT count(*) FROM outbox_default WHERE published_at IS NULL") == 1
    assert await pg.fetchval("SELECT count(*) FROM outbox_default") == 1
    assert await pg.fetchval("SELECT applied_at FROM processed_commands_default") == now


async def test_a_shorter_span_takes_effect_at_once_on_empty_partitions(scratch: str, stack: Settings) -> None:
    """Ranges made ahead at the old span (a day) are recreated at the new one (a minute) while empty; one
    that holds rows stays, and the new span starts after it."""
    await asyncio.to_thread(migrate.upgrade, scratch, "head")
    pg = await asyncpg.connect(dsn(scratch))
    try:
        now = await pg.fetchval("SELECT now()")
        await maintain(pg, stack, now)  # the defaults: daily processed_commands partitions
        await maintain(pg, small(stack), now)
        spans = {
            (p.upper - p.lower).total_seconds()
            for p in await partitions.partitions(pg, "processed_commands")
            if p.lower is not None and p.upper is not None and p.upper > now + timedelta(seconds=60)
        }
        assert spans == {60.0}
        # Rows in the outbox's current partition keep it; the minutes start where it ends.
        await maintain(pg, stack, now)  # hourly again (off the minute grid: recreated)
        await pg.execute(
            "INSERT INTO outbox (event_id, event_type, channel, sku, payload, created_at)"
            " VALUES (gen_random_uuid(), 't', 'inventory', 'S', '{}', $1)",
            now,
        )
        report = await maintain(pg, small(stack), now)
        holding = await pg.fetchval("SELECT tableoid::regclass::text FROM outbox")
        assert holding not in report.respanned
        assert holding in await names(pg, "outbox")
    finally:
        await pg.close()


@pytest.fixture
async def engine(stack: Settings) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(stack.database_url, pool_size=1, pre_ping=False)
    yield engine
    await engine.dispose()


def command(sku: str, command_id: uuid.UUID, issued_at: datetime, body: dict[str, Any]) -> StockCommand:
    envelope = {"sku": sku, "issued_at": issued_at.isoformat(), "actor": "t", "source": "test"}
    return STOCK_COMMAND_ADAPTER.validate_python({"command_id": str(command_id), **envelope, **body})


async def test_a_command_id_is_applied_once_across_partitions(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    """The same record again (same issued_at) and the same id re-sent a day later, in the next
    processed_commands partition, are both duplicates, on the workers' fast path without the look-up."""
    sku = f"PT-{uuid.uuid4().hex[:8].upper()}"
    now = datetime.now(UTC)
    registered = command(
        sku, uuid.uuid4(), now, {"type": "register_item", "name": "P", "initial_quantity": 1}
    )
    receive_id = uuid.uuid4()
    first = command(sku, receive_id, now, {"type": "receive_stock", "quantity": 5})
    resent = command(sku, receive_id, now + timedelta(days=1), {"type": "receive_stock", "quantity": 5})

    def session() -> StockSession:
        return StockSession(AlertPolicy())

    await apply_claiming(engine, session, [registered, first], now)
    again = await apply_claiming(engine, session, [first], now)
    later = await apply_claiming(engine, session, [resent], now)
    assert [c.command_id for c in again.duplicates] == [receive_id]
    assert [c.command_id for c in later.duplicates] == [receive_id]
    assert await db.fetchval("SELECT stock_quantity FROM items WHERE sku = $1", sku) == 6
    claims = await db.fetch(
        "SELECT tableoid::regclass::text AS part FROM processed_commands WHERE command_id = $1", receive_id
    )
    assert len(claims) == 1


@pytest.mark.parametrize("worker", ["workers.stock_worker.main", "workers.price_worker.main"])
def test_a_worker_refuses_to_start_when_processed_ids_expire_before_the_topic(
    stack: Settings, worker: str
) -> None:
    """An id forgotten while its command topic can still redeliver the record would apply it twice."""
    env = {**os.environ, "INVMON_RETENTION_PROCESSED_S": "3600", "INVMON_ENVIRONMENT": "local"}
    done = subprocess.run(
        [sys.executable, "-m", worker], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr[-500:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("refusing to start: INVMON_RETENTION_PROCESSED_S=3600 is shorter than"), lines[
        0
    ]


def test_the_retention_check_wants_the_topic_retention_plus_a_margin(stack: Settings) -> None:
    week = {"t": {"retention.ms": str(7 * 86400 * 1000)}}
    assert (
        processed_retention_problem(stack.model_copy(update={"retention_processed_s": 8 * 86400}), "t", week)
        is None
    )
    short = stack.model_copy(update={"retention_processed_s": 7 * 86400 + 3600})
    assert "at least 665280" in (processed_retention_problem(short, "t", week) or "")
    assert "for ever" in (processed_retention_problem(short, "t", {"t": {"retention.ms": "-1"}}) or "")
    assert processed_retention_problem(short, "t", {}) is None  # no topic yet


def test_db_retention_shows_every_partitioned_table(stack: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "invmon.cli", "db", "retention"],
        env={**os.environ, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for table in TABLES:
        assert f"│ {table} " in done.stdout, done.stdout
    assert "never (archive old months with DETACH PARTITION)" in done.stdout


async def test_topics_create_sets_the_command_topics_retention(stack: Settings) -> None:
    """The retention processed ids must outlive is the project's setting, re-applied to existing topics."""
    names = [STOCK_COMMANDS.name, PRICE_COMMANDS.name, EVENTS.name]
    try:
        await kafka_admin.create(stack.kafka_bootstrap, list(ALL_TOPICS), stack.kafka_partitions, 1, 3600)
        configs = await read_topic_configs(stack, names)
        assert [configs[n]["retention.ms"] for n in names[:2]] == ["3600000", "3600000"]
        assert configs[EVENTS.name]["retention.ms"] != "3600000"
    finally:
        await kafka_admin.create(
            stack.kafka_bootstrap,
            list(ALL_TOPICS),
            stack.kafka_partitions,
            1,
            stack.command_topic_retention_s,
        )
    configs = await read_topic_configs(stack, names)
    assert configs[STOCK_COMMANDS.name]["retention.ms"] == str(stack.command_topic_retention_s * 1000)
