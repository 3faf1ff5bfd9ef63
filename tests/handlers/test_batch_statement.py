"""A batch's writes as one statement against the real PostgreSQL: what that statement may do in one go,
the checks that must still fail the batch, and a pooled connection the server dropped."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.stock_commands import STOCK_COMMAND_ADAPTER, StockCommand
from db import command_log, stock_repo
from db import writes as db_writes
from db.engine import make_engine
from db.stock_repo import StockLevels
from db.writes import Write, WriteCountMismatch
from infra.settings import Settings
from tests.integration.helpers import pg_dsn, wait_until
from workers.pipeline.batch import BatchReport, apply_batch, apply_claiming
from workers.pipeline.failures import OUTAGE_TYPES, is_outage
from workers.rules.alerts import AlertPolicy
from workers.stock_worker.apply import StockSession

pytestmark = pytest.mark.stack


@pytest.fixture
async def engine(stack: Settings) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(stack.database_url, pool_size=1, pre_ping=False)  # as the workers' engine
    yield engine
    await engine.dispose()


def new_sku() -> str:
    return f"OW-{uuid.uuid4().hex[:8].upper()}"


def commands(sku: str, *bodies: dict[str, Any]) -> list[StockCommand]:
    envelope = {"sku": sku, "issued_at": datetime.now(UTC).isoformat(), "actor": "t", "source": "test"}
    return [
        STOCK_COMMAND_ADAPTER.validate_python({"command_id": str(uuid.uuid4()), **envelope, **b})
        for b in bodies
    ]


async def apply(engine: AsyncEngine, batch: Sequence[StockCommand]) -> BatchReport[StockCommand]:
    return await apply_batch(engine, StockSession(AlertPolicy()), batch, datetime.now(UTC))


async def test_an_item_registered_and_moved_in_one_statement(
    engine: AsyncEngine, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The item's insert and its ledger rows go out together; and again with a rename and a stock move of
    an existing item, whose two item writes must not touch the same row."""
    sent: list[list[str]] = []
    send = db_writes.send

    async def recording(pg: asyncpg.Connection, writes: Sequence[Write]) -> None:
        sent.append([w.label for w in writes])
        await send(pg, writes)

    monkeypatch.setattr(db_writes, "send", recording)
    old, new = new_sku(), new_sku()
    await apply(engine, commands(old, {"type": "register_item", "name": "Old", "initial_quantity": 2}))
    report = await apply(
        engine,
        [
            *commands(new, {"type": "register_item", "name": "New", "initial_quantity": 5}),
            *commands(new, {"type": "adjust_stock", "delta": -2, "reason_code": "loss"}),
            *commands(old, {"type": "receive_stock", "quantity": 4}),
            *commands(old, {"type": "reserve_stock", "reservation_id": "r-1", "quantity": 1}),
        ],
    )
    assert not report.rejected
    assert sent[-1] == [
        "upsert items",
        "update stock levels",
        "update item_stock",
        "upsert item_stock",
        "upsert reservations",
        "insert stock_ledger",
        "insert processed_commands",
        "insert outbox",
    ]
    items = await db.fetch(
        "SELECT sku, stock_quantity, reserved_quantity FROM items WHERE sku = ANY($1) ORDER BY sku = $2",
        [old, new],
        old,
    )
    assert [tuple(r) for r in items] == [(new, 3, 0), (old, 6, 1)]
    ledger = await db.fetch(
        "SELECT sku, delta, on_hand_after FROM stock_ledger WHERE sku = $1 ORDER BY id", new
    )
    assert [tuple(r) for r in ledger] == [(new, 5, 5), (new, -2, 3)]
    ids = [e.event_id for e in report.events]
    outbox = await db.fetchval("SELECT count(*) FROM outbox WHERE event_id = ANY($1)", ids)
    assert outbox == len(ids)


class LevelsOfAMissingItem(StockSession):
    """Writes stock levels of an item that is not there, as a bug in the session would."""

    def save(self, now: datetime) -> list[Write]:
        ghost = stock_repo.update_stock_levels([StockLevels(new_sku(), 1, 0, "ok", 1)])
        assert ghost is not None
        return [*super().save(now), ghost]


async def test_stock_levels_that_miss_an_item_fail_the_whole_batch(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    sku = new_sku()
    batch = commands(sku, {"type": "register_item", "name": "Ghosted", "initial_quantity": 1})
    with pytest.raises(WriteCountMismatch, match="update stock levels: expected 1 rows, wrote 0"):
        await apply_batch(engine, LevelsOfAMissingItem(AlertPolicy()), batch, datetime.now(UTC))
    assert await db.fetchval("SELECT count(*) FROM items WHERE sku = $1", sku) == 0
    claimed = await db.fetchval(
        "SELECT count(*) FROM processed_commands WHERE command_id = $1", batch[0].command_id
    )
    assert claimed == 0


async def test_a_concurrent_claim_of_a_command_id_fails_the_batch(
    engine: AsyncEngine, db: asyncpg.Connection, stack: Settings
) -> None:
    """The processed_commands insert has no ON CONFLICT: losing the race must fail, not skip the claim."""
    sku = new_sku()
    await apply(engine, commands(sku, {"type": "register_item", "name": "Raced", "initial_quantity": 1}))
    (receive,) = commands(sku, {"type": "receive_stock", "quantity": 5})
    rival = await asyncpg.connect(pg_dsn(stack))
    try:
        claim = rival.transaction()
        await claim.start()
        await rival.execute(
            "INSERT INTO processed_commands (command_id, command_type, sku, status, issued_at)"
            " VALUES ($1, 'receive_stock', $2, 'applied', $3)",
            receive.command_id,
            sku,
            receive.issued_at,
        )
        batch = asyncio.create_task(apply(engine, [receive]))
        rival_pid = rival.get_server_pid()
        await wait_until(
            lambda: db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", rival_pid
            ),
            bool,
            within=10,
            what="the batch to wait on the rival's claim",
        )
        await claim.commit()
        with pytest.raises(asyncpg.UniqueViolationError):
            await batch
    finally:
        await rival.close()
    assert await db.fetchval("SELECT stock_quantity FROM items WHERE sku = $1", sku) == 1
    again = await apply(engine, [receive])
    assert again.duplicates == [receive]


async def backend_pid(engine: AsyncEngine) -> int:
    async with command_log.transaction(engine) as pg:
        pid: int = await pg.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_a_connection_the_server_dropped_is_not_pooled_again(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    """Without the pre-ping, the first batch on a dropped connection fails (and is retried by the
    worker); the retry must get a fresh connection, not the dead one back from the pool."""
    sku = new_sku()
    pid = await backend_pid(engine)
    assert await db.fetchval("SELECT pg_terminate_backend($1)", pid)
    await wait_until(
        lambda: db.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid),
        lambda n: n == 0,
        within=10,
        what="the terminated backend to go",
    )
    batch = commands(sku, {"type": "register_item", "name": "Survivor", "initial_quantity": 1})
    with pytest.raises((*OUTAGE_TYPES, DBAPIError, asyncpg.PostgresError)) as lost:
        await apply(engine, batch)
    assert is_outage(lost.value), lost.value  # the pipeline waits on it and tries again
    report = await apply(engine, batch)
    assert report.applied == batch
    assert await backend_pid(engine) != pid


async def test_claiming_without_the_look_up_still_applies_each_command_once(
    engine: AsyncEngine, db: asyncpg.Connection
) -> None:
    """The worker skips reading which ids are processed; a batch holding one seen before (a redelivery)
    fails on the key with nothing applied, and is applied again with the look-up."""
    sku = new_sku()
    first = commands(sku, {"type": "register_item", "name": "Once", "initial_quantity": 1})
    second = commands(sku, {"type": "receive_stock", "quantity": 2}, {"type": "receive_stock", "quantity": 3})

    def session() -> StockSession:
        return StockSession(AlertPolicy())

    now = datetime.now(UTC)
    assert (await apply_claiming(engine, session, first, now)).applied == first
    redelivered = [*first, second[0]]
    with pytest.raises(asyncpg.UniqueViolationError):  # what apply_claiming absorbs
        await apply_batch(engine, session(), redelivered, now, look_up_seen=False)
    report = await apply_claiming(engine, session, redelivered, now)
    assert (report.duplicates, report.applied) == (first, [second[0]])
    report = await apply_claiming(engine, session, [second[0], second[1], second[1]], now)
    assert (report.duplicates, report.applied) == ([second[0], second[1]], [second[1]])
    assert await db.fetchval("SELECT stock_quantity FROM items WHERE sku = $1", sku) == 6
    assert await db.fetchval("SELECT count(*) FROM stock_ledger WHERE sku = $1", sku) == 3


async def test_a_batch_waiting_on_the_item_lock_reads_the_reservation_as_the_holder_left_it(
    engine: AsyncEngine, db: asyncpg.Connection, stack: Settings
) -> None:
    """Reservations are read without a lock of their own, in a statement after the item lock: a batch
    that waited on a rival holding the item must see the reservation the rival made, not the snapshot from
    before its wait (in which the reservation does not exist, so its release would be rejected)."""
    sku = new_sku()
    await apply(engine, commands(sku, {"type": "register_item", "name": "Held", "initial_quantity": 10}))
    (release,) = commands(sku, {"type": "release_reservation", "reservation_id": "r-1"})
    rival = await asyncpg.connect(pg_dsn(stack))
    try:
        held = rival.transaction()
        await held.start()
        # What another worker's batch reserving would do, under the item's lock.
        await rival.execute("SELECT 1 FROM items WHERE sku = $1 FOR UPDATE", sku)
        await rival.execute(
            "INSERT INTO reservations (reservation_id, sku, quantity, status)"
            " VALUES ('r-1', $1, 3, 'active')",
            sku,
        )
        await rival.execute(
            "UPDATE items SET reserved_quantity = 3, version = version + 1 WHERE sku = $1", sku
        )
        await rival.execute("UPDATE item_stock SET reserved = 3 WHERE sku = $1", sku)
        batch = asyncio.create_task(apply(engine, [release]))
        rival_pid = rival.get_server_pid()
        await wait_until(
            lambda: db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", rival_pid
            ),
            bool,
            within=10,
            what="the batch to wait on the rival's item lock",
        )
        await held.commit()
        report = await batch
    finally:
        await rival.close()
    assert report.applied == [release], report
    row = await db.fetchrow("SELECT stock_quantity, reserved_quantity FROM items WHERE sku = $1", sku)
    assert tuple(row) == (10, 0)
    status = await db.fetchval("SELECT status FROM reservations WHERE sku = $1", sku)
    assert status == "released"
