"""Set-based writes over arrays: one statement for a whole batch of rows, whatever its size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg


def unnest(fields: Sequence[str], types: Sequence[str]) -> str:
    arrays = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(types))
    return f"SELECT * FROM unnest({arrays}) AS t({', '.join(fields)})"


def columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


async def upsert(
    pg: asyncpg.Connection,
    table: str,
    fields: Sequence[str],
    types: Sequence[str],
    conflict: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """INSERT every row, or UPDATE every non-key column (and updated_at) of the row already there."""
    if not rows:
        return
    updates = ", ".join(f"{f} = excluded.{f}" for f in fields if f not in conflict)
    await pg.execute(
        f"INSERT INTO {table} ({', '.join(fields)}) {unnest(fields, types)}"
        f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {updates}, updated_at = now()",
        *columns(rows, len(fields)),
    )
