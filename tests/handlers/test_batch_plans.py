"""The plans PostgreSQL keeps for a worker's statements: a batch of a few commands must touch a few rows of
items and item_stock, not read them whole (a worker's statements are prepared, and after five runs the
server plans them once for arrays of unknown length)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from db import command_log, stock_repo
from db import writes as db_writes
from db.engine import make_engine
from db.stock_repo import StockLevels, StockRow
from infra.settings import Settings

pytestmark = pytest.mark.stack

ROWS = 2000  # the benchmarks' catalogue: small enough that a whole-table scan looks cheap to the planner


@pytest.fixture
async def scratch(db: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """items and item_stock copies of ROWS rows in a schema of their own, first on the search path."""
    schema = f"plans_{uuid.uuid4().hex[:8]}"
    await db.execute(
        f"CREATE SCHEMA {schema};"
        f" CREATE TABLE {schema}.items (LIKE public.items INCLUDING ALL);"
        f" CREATE TABLE {schema}.item_stock (LIKE public.item_stock INCLUDING ALL);"
        f" INSERT INTO {schema}.items (sku, name) SELECT 'P-' || i, 'x' FROM generate_series(1, {ROWS}) i;"
        f" INSERT INTO {schema}.item_stock (sku, location, on_hand, reserved)"
        f" SELECT sku, 'default', 0, 0 FROM {schema}.items;"
        f" ANALYZE {schema}.items, {schema}.item_stock;"
        f" SET search_path = {schema}"
    )
    try:
        yield db
    finally:
        await db.execute(f"RESET search_path; DROP SCHEMA {schema} CASCADE")


def literal(values: list[object]) -> str:
    """An array argument as SQL text (EXECUTE takes no bind parameters); plain values only."""
    return "'{" + ",".join("NULL" if v is None else f'"{v}"' for v in values) + "}'"


async def generic_plan(conn: asyncpg.Connection, writes: list[db_writes.Write]) -> str:
    sql, args = db_writes.compose(writes)
    await conn.execute(f"SET plan_cache_mode = force_generic_plan; PREPARE batch AS {sql}")
    try:
        rows = await conn.fetch(f"EXPLAIN EXECUTE batch({', '.join(map(literal, args))})")
    finally:
        await conn.execute("DEALLOCATE batch; RESET plan_cache_mode")
    return "\n".join(r[0] for r in rows)


@pytest.mark.parametrize("size", [1, 5, stock_repo.SMALL_UPDATE])
async def test_a_small_batch_updates_its_rows_by_index(scratch: asyncpg.Connection, size: int) -> None:
    skus = [f"P-{i}" for i in range(1, size + 1)]
    writes = db_writes.present(
        stock_repo.update_stock_levels([StockLevels(s, 3, 1, "ok", 2) for s in skus]),
        stock_repo.update_stock([StockRow(s, "default", 3, 1, None, None, "ok") for s in skus]),
    )
    plan = await generic_plan(scratch, writes)
    assert "Seq Scan" not in plan, plan

    await db_writes.send(scratch, writes)  # and they do what they say, to the rows named only
    changed = await scratch.fetchval(
        "SELECT count(*) FROM items JOIN item_stock USING (sku)"
        " WHERE stock_quantity = 3 AND reserved_quantity = 1 AND version = 2 AND on_hand = 3 AND reserved = 1"
    )
    assert changed == size
    assert await scratch.fetchval("SELECT count(*) FROM items WHERE version = 1") == ROWS - size


async def test_the_small_item_stock_update_leaves_the_other_locations_alone(
    scratch: asyncpg.Connection,
) -> None:
    await scratch.execute(
        "INSERT INTO item_stock (sku, location, on_hand, reserved)"
        " VALUES ('P-1', 'plans-shop', 7, 0), ('P-2', 'plans-shop', 8, 0)"
    )
    write = stock_repo.update_stock(
        [
            StockRow("P-1", "plans-shop", 6, 0, None, None, "ok"),
            StockRow("P-2", "default", 9, 0, None, None, "ok"),
        ]
    )
    assert write is not None
    await db_writes.send(scratch, [write])
    rows = await scratch.fetch(
        "SELECT sku, location, on_hand FROM item_stock WHERE sku IN ('P-1', 'P-2') ORDER BY sku, location"
    )
    assert [tuple(r) for r in rows] == [
        ("P-1", "default", 0),
        ("P-1", "plans-shop", 6),
        ("P-2", "default", 9),
        ("P-2", "plans-shop", 8),
    ]


async def test_a_large_batch_updates_every_row_and_counts_a_missing_one(scratch: asyncpg.Connection) -> None:
    rows = [StockLevels(f"P-{i}", 4, 0, "ok", 5) for i in range(1, 101)]
    write = stock_repo.update_stock_levels([*rows, StockLevels("P-missing", 1, 0, "ok", 1)])
    assert write is not None
    with pytest.raises(db_writes.WriteCountMismatch, match="expected 101 rows, wrote 100"):
        async with scratch.transaction():
            await db_writes.send(scratch, [write])
    write = stock_repo.update_stock_levels(rows)
    assert write is not None
    await db_writes.send(scratch, [write])
    assert await scratch.fetchval("SELECT count(*) FROM items WHERE version = 5") == 100


async def test_the_workers_engine_plans_each_statement_once(stack: Settings) -> None:
    """The worker's engine (workers/pipeline/process.py) asks for generic plans: without them PostgreSQL
    planned the lock and the read of every small batch again (a third of its CPU for a batch of five)."""
    engine = make_engine(stack.database_url, pool_size=1, pre_ping=False, generic_plans=True)
    try:
        async with command_log.transaction(engine) as pg:
            assert await pg.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    finally:
        await engine.dispose()
