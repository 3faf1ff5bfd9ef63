"""Revision 0011 against the real PostgreSQL: existing stock moves into 'default' with every ledger row
kept; the downgrade folds back, and refuses while stock sits anywhere else."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from db import migrate
from tests.handlers.conftest import dsn

pytestmark = pytest.mark.stack

SEED = """
INSERT INTO items (sku, name, stock_quantity, reserved_quantity, min_stock_level, alert_state)
SELECT 'M-' || i, 'item ' || i, i * 3, i, 2, CASE WHEN i * 2 <= 2 THEN 'low' ELSE 'ok' END
FROM generate_series(1, 40) i;
INSERT INTO reservations (sku, reservation_id, quantity, status)
SELECT 'M-' || i, 'r-' || i, i, 'active' FROM generate_series(1, 40) i;
INSERT INTO stock_ledger (command_id, sku, delta, reason, actor, on_hand_after, reserved_after, created_at)
SELECT gen_random_uuid(), 'M-' || (i % 40 + 1), 1, 'receive_stock', 'a', i, 0, now() - i * interval '1 hour'
FROM generate_series(1, 500) i;
"""
LEDGER = (
    "SELECT count(*), md5(string_agg(r::text, '|' ORDER BY r::text)) FROM (SELECT id, command_id, sku, delta,"
    " reserved_delta, reason, actor, on_hand_after, reserved_after, created_at FROM stock_ledger) r"
)


async def test_existing_stock_moves_to_default_and_back(scratch: str) -> None:
    await asyncio.to_thread(migrate.upgrade, scratch, "0010")
    pg = await asyncpg.connect(dsn(scratch))
    try:
        await pg.execute(SEED)
        ledger_before = tuple(await pg.fetchrow(LEDGER))
        items_before = await pg.fetch("SELECT * FROM items ORDER BY sku")
    finally:
        await pg.close()

    await asyncio.to_thread(migrate.upgrade, scratch, "0011")
    pg = await asyncpg.connect(dsn(scratch))
    try:
        assert tuple(await pg.fetchrow(LEDGER)) == ledger_before
        assert await pg.fetchval("SELECT count(*) FROM stock_ledger WHERE location <> 'default'") == 0
        assert await pg.fetchval("SELECT count(*) FROM reservations WHERE location <> 'default'") == 0
        default = await pg.fetchrow("SELECT * FROM locations")
        assert (default["code"], default["kind"], default["is_active"]) == ("default", "warehouse", True)
        rows = await pg.fetch(
            "SELECT i.sku, s.location, s.on_hand = i.stock_quantity AS on_hand,"
            " s.reserved = i.reserved_quantity AS reserved, s.alert_state = i.alert_state AS alert,"
            " s.min_stock_level IS NULL AND s.max_stock_level IS NULL AS follows"
            " FROM items i JOIN item_stock s USING (sku)"
        )
        assert len(rows) == 40
        assert all(r["location"] == "default" and r["on_hand"] and r["reserved"] and r["alert"] for r in rows)
        assert all(r["follows"] for r in rows)
        assert await pg.fetchval("SELECT count(*) FROM item_stock WHERE alert_state = 'low'") == 1
        # Room on its pages, so that a stock command's UPDATE of its row stays HOT (the migration says why).
        options = await pg.fetchval("SELECT reloptions FROM pg_class WHERE relname = 'item_stock'")
        assert options == ["fillfactor=70"]
        with pytest.raises(asyncpg.CheckViolationError):
            await pg.execute("UPDATE locations SET is_active = false WHERE code = 'default'")
        with pytest.raises(asyncpg.CheckViolationError):
            await pg.execute("INSERT INTO locations (code, name, kind) VALUES ('bad code', 'x', 'store')")
        with pytest.raises(asyncpg.CheckViolationError):
            await pg.execute("UPDATE item_stock SET reserved = on_hand + 1 WHERE sku = 'M-1'")

        # Stock at another location blocks the downgrade; moved back, it no longer does.
        await pg.execute("INSERT INTO locations (code, name, kind) VALUES ('STORE-1', 'Shop', 'store')")
        await pg.execute(
            "INSERT INTO item_stock (sku, location, on_hand, reserved) VALUES ('M-1', 'STORE-1', 2, 0)"
        )
    finally:
        await pg.close()
    with pytest.raises(RuntimeError, match="outside 'default' still hold stock"):
        await asyncio.to_thread(migrate.downgrade, scratch, "0010")
    pg = await asyncpg.connect(dsn(scratch))
    try:
        assert await pg.fetchval("SELECT count(*) FROM item_stock") == 41  # refused: nothing dropped
        await pg.execute("UPDATE item_stock SET on_hand = 0 WHERE location = 'STORE-1'")
    finally:
        await pg.close()

    await asyncio.to_thread(migrate.downgrade, scratch, "0010")
    pg = await asyncpg.connect(dsn(scratch))
    try:
        assert tuple(await pg.fetchrow(LEDGER)) == ledger_before
        assert await pg.fetch("SELECT * FROM items ORDER BY sku") == items_before
        assert await pg.fetchval("SELECT to_regclass('item_stock')") is None
        columns = await pg.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE column_name IN ('location', 'locations')"
        )
        assert columns == 0
    finally:
        await pg.close()
