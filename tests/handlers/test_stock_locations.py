"""Location commands through the stock subscriber in memory (TestKafkaBroker) over the real PostgreSQL:
v1 records apply at 'default', stock moves per location with the totals equal to the sums, transfers are
one command, and an unknown or inactive location is a rejection."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker

from db.engine import make_engine
from infra.kafka import make_broker
from infra.settings import Settings
from tests.handlers.conftest import dsn
from tests.handlers.test_stock_handler import RecordingSender, command
from tests.handlers.test_stock_handler import send as send_record
from workers.pipeline.consumer import Runtime
from workers.stock_worker.handler import register

pytestmark = pytest.mark.stack


@pytest.fixture
async def broker(stack: Settings) -> AsyncIterator[KafkaBroker]:
    engine = make_engine(stack.database_url)
    broker = make_broker(stack, client_id="locations-test")
    register(broker, stack, Runtime(engine, RecordingSender()))
    async with TestKafkaBroker(broker) as test_broker:
        yield test_broker
    await engine.dispose()


@pytest.fixture
async def db(stack: Settings) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn(stack.database_url))
    yield connection
    await connection.close()


@pytest.fixture
async def places(db: asyncpg.Connection) -> tuple[str, str, str]:
    """Two active locations and an inactive one, with codes of their own."""
    tag = uuid.uuid4().hex[:6]
    codes = (f"WH-{tag}", f"store.{tag}", f"closed_{tag}")
    for code, kind, active in zip(codes, ("warehouse", "store", "store"), (True, True, False), strict=True):
        await db.execute(
            "INSERT INTO locations (code, name, kind, is_active) VALUES ($1, $1, $2, $3)", code, kind, active
        )
    return codes


async def send(broker: KafkaBroker, sku: str, type_: str, **fields: Any) -> str:
    body = command(sku, type_, **fields)
    await send_record(broker, body, sku)
    return str(body["command_id"])


async def stock(db: asyncpg.Connection, sku: str) -> dict[str, tuple[int, int]]:
    rows = await db.fetch("SELECT location, on_hand, reserved FROM item_stock WHERE sku = $1", sku)
    return {r["location"]: (r["on_hand"], r["reserved"]) for r in rows}


async def assert_totals_are_the_sums(db: asyncpg.Connection, sku: str) -> None:
    item = await db.fetchrow("SELECT stock_quantity, reserved_quantity FROM items WHERE sku = $1", sku)
    sums = await db.fetchrow("SELECT sum(on_hand), sum(reserved) FROM item_stock WHERE sku = $1", sku)
    assert tuple(item) == tuple(sums)
    rows = await db.fetch(
        "SELECT location, sum(delta), sum(reserved_delta) FROM stock_ledger WHERE sku = $1 GROUP BY location",
        sku,
    )
    ledger = {r[0]: (r[1], r[2]) for r in rows}
    here = await stock(db, sku)
    assert set(ledger) <= set(here)
    assert all(ledger.get(location, (0, 0)) == levels for location, levels in here.items())


async def outcome(db: asyncpg.Connection, command_id: str) -> tuple[str, str | None]:
    row = await db.fetchrow(
        "SELECT status, reason FROM processed_commands WHERE command_id = $1", uuid.UUID(command_id)
    )
    assert row is not None
    return row["status"], row["reason"]


def new_sku() -> str:
    return f"LOC-{uuid.uuid4().hex[:8].upper()}"


async def test_a_v1_record_applies_at_default(broker: KafkaBroker, db: asyncpg.Connection) -> None:
    sku = new_sku()
    await send(broker, sku, "register_item", name="Mug", initial_quantity=4)
    await send(broker, sku, "receive_stock", quantity=3)
    await send(broker, sku, "reserve_stock", reservation_id="o-1", quantity=2)
    assert await stock(db, sku) == {"default": (7, 2)}
    assert await db.fetchval("SELECT location FROM reservations WHERE sku = $1", sku) == "default"
    await assert_totals_are_the_sums(db, sku)


async def test_stock_moves_per_location(
    broker: KafkaBroker, db: asyncpg.Connection, places: tuple[str, str, str]
) -> None:
    wh, store, _ = places
    sku = new_sku()
    await send(broker, sku, "register_item", name="Mug", initial_quantity=10, location=wh, min_stock_level=2)
    await send(broker, sku, "receive_stock", quantity=5, location=store)
    await send(broker, sku, "adjust_stock", delta=-1, reason_code="damage", location=wh)
    await send(broker, sku, "reserve_stock", reservation_id="o-1", quantity=4, location=store)
    assert await stock(db, sku) == {wh: (9, 0), store: (5, 4)}
    # A count sets that location only; the fulfilment ships from the reservation's location.
    await send(broker, sku, "count_stock", counted_quantity=8, location=wh)
    await send(broker, sku, "fulfil_reservation", reservation_id="o-1")
    assert await stock(db, sku) == {wh: (8, 0), store: (1, 0)}
    item = await db.fetchrow(
        "SELECT stock_quantity, reserved_quantity, version FROM items WHERE sku = $1", sku
    )
    assert tuple(item) == (9, 0, 6)
    await assert_totals_are_the_sums(db, sku)


async def test_a_transfer_is_one_command(
    broker: KafkaBroker, db: asyncpg.Connection, places: tuple[str, str, str]
) -> None:
    wh, store, _ = places
    sku = new_sku()
    await send(broker, sku, "register_item", name="Mug", initial_quantity=10, location=wh)
    await send(broker, sku, "reserve_stock", reservation_id="o-1", quantity=3, location=wh)
    moved = await send(broker, sku, "transfer_stock", from_location=wh, to_location=store, quantity=7)
    assert await outcome(db, moved) == ("applied", None)
    # Reserved units never move: only 0 are left available at the warehouse.
    refused = await send(broker, sku, "transfer_stock", from_location=wh, to_location=store, quantity=1)
    status, reason = await outcome(db, refused)
    assert status == "rejected"
    assert reason is not None
    assert reason.startswith("insufficient_stock")
    assert await stock(db, sku) == {wh: (3, 3), store: (7, 0)}
    ledger = await db.fetch(
        "SELECT location, delta, on_hand_after, reason FROM stock_ledger WHERE command_id = $1 ORDER BY id",
        uuid.UUID(moved),
    )
    assert [tuple(r) for r in ledger] == [(wh, -7, 10, "transfer_stock"), (store, 7, 10, "transfer_stock")]
    events = await db.fetch(
        "SELECT event_type, payload FROM outbox WHERE payload->>'command_id' = $1 ORDER BY id", moved
    )
    assert [e["event_type"] for e in events][:3] == ["stock_transferred", "stock_changed", "stock_changed"]
    payloads = [json.loads(e["payload"]) for e in events]
    assert {p["version"] for p in payloads if "version" in p} == {3}
    assert [(p["location"], p["location_on_hand"], p["on_hand"]) for p in payloads[1:3]] == [
        (wh, 3, 10),
        (store, 7, 10),
    ]
    await assert_totals_are_the_sums(db, sku)


async def test_unknown_and_inactive_locations_are_rejected(
    broker: KafkaBroker, db: asyncpg.Connection, places: tuple[str, str, str]
) -> None:
    wh, store, closed = places
    sku = new_sku()
    await send(broker, sku, "register_item", name="Mug", initial_quantity=5, location=wh)
    nowhere = await send(broker, sku, "receive_stock", quantity=1, location="NO-SUCH-PLACE")
    inactive = await send(broker, sku, "transfer_stock", from_location=wh, to_location=closed, quantity=1)
    assert (await outcome(db, nowhere))[1] == "unknown_location: location NO-SUCH-PLACE does not exist"
    assert (await outcome(db, inactive))[1] == f"inactive_location: location {closed} is inactive"
    unregistered = await send(broker, new_sku(), "register_item", name="Mug", location="NO-SUCH-PLACE")
    assert (await outcome(db, unregistered))[0] == "rejected"
    assert await stock(db, sku) == {wh: (5, 0)}
    # Stock may leave a location that became inactive.
    await send(broker, sku, "transfer_stock", from_location=wh, to_location=store, quantity=2)
    await db.execute("UPDATE locations SET is_active = false WHERE code = $1", store)
    drained = await send(broker, sku, "transfer_stock", from_location=store, to_location=wh, quantity=2)
    assert await outcome(db, drained) == ("applied", None)
    assert await stock(db, sku) == {wh: (5, 0), store: (0, 0)}


async def test_location_levels_drive_the_location_alert(
    broker: KafkaBroker, db: asyncpg.Connection, places: tuple[str, str, str]
) -> None:
    wh, store, _ = places
    sku = new_sku()
    await send(broker, sku, "register_item", name="Mug", initial_quantity=20, location=wh, min_stock_level=2)
    await send(broker, sku, "transfer_stock", from_location=wh, to_location=store, quantity=6)
    levels = await send(broker, sku, "set_location_levels", location=store, min_stock_level=8)
    assert await outcome(db, levels) == ("applied", None)
    row = await db.fetchrow(
        "SELECT min_stock_level, max_stock_level, alert_state FROM item_stock"
        " WHERE sku = $1 AND location = $2",
        sku,
        store,
    )
    assert tuple(row) == (8, None, "low")
    alerts = await db.fetch(
        "SELECT event_type, payload->>'location' AS location FROM outbox"
        " WHERE payload->>'command_id' = $1 AND channel = 'alerts'",
        levels,
    )
    assert [tuple(a) for a in alerts] == [("low_stock_detected", store)]
    assert await db.fetchval("SELECT alert_state FROM items WHERE sku = $1", sku) == "ok"
