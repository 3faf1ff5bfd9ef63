"""Outbox queries for the relay. Uses a raw asyncpg connection: the relay also LISTENs and holds a
session-level advisory lock on it, which a pooled SQLAlchemy connection cannot promise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from db.command_log import OUTBOX_CHANNEL

# One relay at a time publishes, so events of one SKU leave in the order they were written.
RELAY_LOCK_KEY = 0x1A7E_0B0C


@dataclass(frozen=True, slots=True)
class PendingEvent:
    id: int
    event_id: str
    event_type: str
    channel: str
    sku: str
    payload: str  # the event as JSON text, passed on as it is
    age_s: float


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def try_lead(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY))


async def listen(conn: asyncpg.Connection, callback: Any) -> None:
    await conn.add_listener(OUTBOX_CHANNEL, callback)


_PENDING = """
    SELECT id, event_id::text, event_type, channel, sku, payload::text,
           extract(epoch FROM clock_timestamp() - created_at)::float8 AS age_s
    FROM outbox WHERE published_at IS NULL {also} ORDER BY id LIMIT $1
"""
# The rows of the round before are marked in the same statement: one round trip a round instead of two.
# A data-modifying CTE runs to completion even unreferenced, but the SELECT sees the snapshot from before
# it, so the marked rows are left out by id. published_at stays the time they were published: the
# database's clock less how long ago that was ($3 seconds, the relay's own measure).
_MARK = (
    "UPDATE outbox SET published_at = clock_timestamp() - make_interval(secs => {ago})"
    " WHERE id = ANY({ids}::bigint[])"
)
_MARK_AND_PENDING = f"WITH marked AS ({_MARK.format(ids='$2', ago='$3')})" + _PENDING.format(
    also="AND id <> ALL($2::bigint[])"
)
_PENDING_ONLY = _PENDING.format(also="")
_MARK_ONLY = _MARK.format(ids="$1", ago="$2")


async def pending(
    conn: asyncpg.Connection, limit: int, mark: Sequence[int] = (), published_s_ago: float = 0.0
) -> list[PendingEvent]:
    """The next `limit` unpublished rows in id order; `mark`: rows published `published_s_ago` seconds ago,
    marked first (atomically: the statement is one transaction)."""
    if mark:
        rows = await conn.fetch(_MARK_AND_PENDING, limit, list(mark), published_s_ago)
    else:
        rows = await conn.fetch(_PENDING_ONLY, limit)
    return [PendingEvent(*r) for r in rows]  # the columns are the fields, in order


async def mark_published(conn: asyncpg.Connection, ids: Sequence[int], published_s_ago: float = 0.0) -> None:
    await conn.execute(_MARK_ONLY, list(ids), published_s_ago)


async def mark_refused(conn: asyncpg.Connection, refusals: Mapping[int, str]) -> None:
    """Rows a destination refused for good: marked published (they no longer hold the rows after them)
    and failed, with the reason. One transaction, so a row is never failed without being published."""
    async with conn.transaction():
        await conn.execute(
            """
            UPDATE outbox SET failed_at = clock_timestamp(), failed_reason = r.reason,
                published_at = coalesce(published_at, clock_timestamp())
            FROM unnest($1::bigint[], $2::text[]) AS r(id, reason)
            WHERE outbox.id = r.id
            """,
            list(refusals),
            list(refusals.values()),
        )
