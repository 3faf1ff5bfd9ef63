"""Set-based writes over arrays: one statement for a whole batch of rows, whatever its size.

They build `Write`s (db/writes.py) for the batch to send together; none is sent here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from db.writes import Write


def unnest(fields: Sequence[str], types: Sequence[str]) -> str:
    arrays = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    return f"SELECT * FROM unnest({arrays}) AS t({', '.join(fields)})"


def columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


def insert(
    table: str, fields: Sequence[str], types: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> Write | None:
    """INSERT every row (None when there are none). A column typed `jsonb` travels as text: the driver
    connection needs no JSON codec, and PostgreSQL parses it either way."""
    if not rows:
        return None
    wire = ["text" if t == "jsonb" else t for t in types]
    select = ", ".join(f"{f}::jsonb" if t == "jsonb" else f for f, t in zip(fields, types, strict=True))
    sql = f"INSERT INTO {table} ({', '.join(fields)}) SELECT {select} FROM ({unnest(fields, wire)}) AS r"
    return Write(f"insert {table}", sql, tuple(columns(rows, len(fields))))


def upsert(
    table: str,
    fields: Sequence[str],
    types: Sequence[str],
    conflict: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> Write | None:
    """INSERT every row, or UPDATE every non-key column (and updated_at) of the row already there."""
    if not rows:
        return None
    updates = ", ".join(f"{f} = excluded.{f}" for f in fields if f not in conflict)
    sql = (
        f"INSERT INTO {table} ({', '.join(fields)}) {unnest(fields, types)}"
        f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {updates}, updated_at = now()"
    )
    return Write(f"upsert {table}", sql, tuple(columns(rows, len(fields))))
