"""Dead letters as rows: written by a command worker when it dead-letters, read by the command status."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy import RowMapping
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

DEAD_LETTERS = sa.Table(
    "dead_letters",
    sa.MetaData(),
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("command_id", UUID(as_uuid=True)),
    sa.Column("topic", sa.String(249)),
    sa.Column("partition", sa.Integer),
    sa.Column("offset", sa.BigInteger),
    sa.Column("reason", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("by_reference", sa.Boolean),
    sa.Column("actor", sa.Text),
)


# A dead letter's reason is free text (it names fields and values); metrics and summaries group by a bounded
# category instead, from the reason's start as workers/intake.py and workers/pipeline/isolation.py word it.
# First match wins, in Python and in SQL alike.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("empty", "empty record value"),
    ("undecodable", "invalid command: body: Invalid JSON"),
    ("invalid", "invalid command:"),
    ("key_mismatch", "record key "),
    ("refused", "refused by PostgreSQL"),
    ("failed", "failed: "),
)
OTHER = "other"


def category(reason: str) -> str:
    """The bounded category of a dead letter's reason (a metric label, a summary row)."""
    return next((name for name, prefix in CATEGORIES if reason.startswith(prefix)), OTHER)


def category_sql(column: str) -> str:
    """`category` as an SQL expression over a text column (the prefixes are our constants)."""
    cases = " ".join(
        f"WHEN starts_with({column}, '{prefix.replace(chr(39), chr(39) * 2)}') THEN '{name}'"
        for name, prefix in CATEGORIES
    )
    return f"CASE {cases} ELSE '{OTHER}' END"


class DeadLetterRow(NamedTuple):
    command_id: uuid.UUID | None
    topic: str
    partition: int
    offset: int
    reason: str
    at: datetime
    by_reference: bool
    actor: str | None


async def record(engine: AsyncEngine, rows: Sequence[DeadLetterRow]) -> None:
    """Idempotent: a record dead-lettered again (its batch came again) keeps its first row."""
    if not rows:
        return
    statement = insert(DEAD_LETTERS).values([r._asdict() for r in rows]).on_conflict_do_nothing()
    async with engine.begin() as conn:
        await conn.execute(statement)


async def latest_for_command(
    conn: AsyncConnection, command_id: uuid.UUID, *, actor: str | None
) -> RowMapping | None:
    """`actor=None` reads any sender's (admins); else only that sender's, as with processed commands."""
    query = (
        sa.select(DEAD_LETTERS.c.reason, DEAD_LETTERS.c.at, DEAD_LETTERS.c.by_reference)
        .where(DEAD_LETTERS.c.command_id == command_id)
        .order_by(DEAD_LETTERS.c.at.desc())
        .limit(1)
    )
    if actor is not None:
        query = query.where(DEAD_LETTERS.c.actor == actor)
    return (await conn.execute(query)).mappings().first()
