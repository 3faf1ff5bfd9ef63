"""The command log every command worker writes in its batch transaction: idempotency claims and outbox.

The hot path talks to the asyncpg connection under the SQLAlchemy transaction (array parameters, one
statement for all of a batch's writes), which SQLAlchemy's own statement layer cannot do.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import NamedTuple

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db import bulk
from db.writes import Write

OUTBOX_CHANNEL = "invmon_outbox"


class ProcessedRow(NamedTuple):
    command_id: uuid.UUID
    command_type: str
    sku: str
    status: str
    reason: str | None
    applied_at: datetime
    actor: str
    issued_at: datetime  # the partition key: from the command itself, so the same on every redelivery


class OutboxRow(NamedTuple):
    event_id: uuid.UUID
    event_type: str
    channel: str
    sku: str
    payload: str  # JSON text
    created_at: datetime


_PROCESSED_TYPES = ("uuid", "text", "text", "text", "text", "timestamptz", "text", "timestamptz")
_OUTBOX_TYPES = ("uuid", "text", "text", "text", "jsonb", "timestamptz")


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
        try:
            async with pg.transaction():
                yield pg
        except BaseException as error:
            if lost(pg, error):
                # SQLAlchemy never saw this error (it came from the driver), so it would pool the dead
                # connection again; and a worker's engine skips the pre-ping that would catch it.
                await conn.invalidate(error if isinstance(error, Exception) else None)
            raise


# Errors after which the connection cannot be trusted: the server went away or is shutting down (class 08
# and 57P0x), the socket failed, or the driver lost track of the protocol. A backend terminated while its
# connection sat in the pool can show as ConnectionDoesNotExistError (an InterfaceError) or as
# InternalClientError ("another operation is in progress") before is_closed() turns true.
_LOST = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.IdleSessionTimeoutError,
)


def lost(pg: asyncpg.Connection, error: BaseException) -> bool:
    return pg.is_closed() or isinstance(error, _LOST)


async def seen_command_ids(pg: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    if not ids:
        return set()
    rows = await pg.fetch("SELECT command_id FROM processed_commands WHERE command_id = ANY($1::uuid[])", ids)
    return {r[0] for r in rows}


def insert_processed(rows: Sequence[ProcessedRow]) -> Write | None:
    """No ON CONFLICT on purpose: a concurrent claim of the same record (same id and issued_at, hence the
    same partition) fails the transaction instead of applying twice. The key includes the partition key,
    so an id claimed before with another issued_at (a re-sent command) is found by the look-up across
    partitions instead: the write then claims fewer rows than expected and fails the batch
    (WriteCountMismatch). Either way the batch is retried and sees the id as already processed."""
    write = bulk.insert(
        "processed_commands", ProcessedRow._fields, _PROCESSED_TYPES, rows, same=("applied_at",)
    )
    if write is None:
        return None
    sql = (
        f"{write.sql} WHERE NOT EXISTS"
        " (SELECT 1 FROM processed_commands p WHERE p.command_id = r.command_id) RETURNING 1"
    )
    return dataclasses.replace(write, sql=sql, expected=len(rows))


def insert_outbox(rows: Sequence[OutboxRow]) -> Write | None:
    # `now` is the batch's; the channel is the same in a batch without alerts or rejections (most small
    # batches), else it travels per row: two statement texts, each prepared once.
    write = bulk.insert("outbox", OutboxRow._fields, _OUTBOX_TYPES, rows, same=("channel", "created_at"))
    # Delivered at commit, so the relay wakes exactly when the rows become visible.
    return None if write is None else dataclasses.replace(write, notify=OUTBOX_CHANNEL)
