"""The command log every command worker writes in its batch transaction: idempotency claims and outbox.

The hot path talks to the asyncpg connection under the SQLAlchemy transaction (binary COPY, array
parameters), which SQLAlchemy's own statement layer cannot do.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import NamedTuple

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

OUTBOX_CHANNEL = "invmon_outbox"


class ProcessedRow(NamedTuple):
    command_id: uuid.UUID
    command_type: str
    sku: str
    status: str
    reason: str | None
    applied_at: datetime


class OutboxRow(NamedTuple):
    event_id: uuid.UUID
    event_type: str
    channel: str
    sku: str
    payload: str  # JSON text
    created_at: datetime


async def driver(conn: AsyncConnection) -> asyncpg.Connection:
    raw = await conn.get_raw_connection()
    connection: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    return connection


@asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """One real PostgreSQL transaction on a pooled connection's asyncpg driver.

    Not `engine.begin()`: SQLAlchemy's asyncpg adapter sends BEGIN lazily, with the first statement that
    goes through SQLAlchemy, so statements sent straight to the driver would each autocommit.
    """
    async with engine.connect() as conn:
        pg = await driver(conn)
        async with pg.transaction():
            yield pg


async def seen_command_ids(pg: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    if not ids:
        return set()
    rows = await pg.fetch("SELECT command_id FROM processed_commands WHERE command_id = ANY($1::uuid[])", ids)
    return {r[0] for r in rows}


async def insert_processed(pg: asyncpg.Connection, rows: Sequence[ProcessedRow]) -> None:
    """No ON CONFLICT on purpose: a concurrent claim of the same id fails the transaction instead of
    applying twice; the batch is then retried and sees the id as already processed."""
    if rows:
        await pg.copy_records_to_table("processed_commands", records=rows, columns=ProcessedRow._fields)


async def insert_outbox(pg: asyncpg.Connection, rows: Sequence[OutboxRow]) -> None:
    if rows:
        await pg.copy_records_to_table("outbox", records=rows, columns=OutboxRow._fields)
        # Delivered at commit, so the relay wakes exactly when the rows become visible.
        await pg.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
