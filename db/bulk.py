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
    table: str,
    fields: Sequence[str],
    types: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    same: Sequence[str] = (),
) -> Write | None:
    """INSERT every row (None when there are none). A column typed `jsonb` travels as text: the driver
    connection needs no JSON codec, and PostgreSQL parses it either way.

    `same`: columns whose value is the same in every row (a batch's `now`), sent once instead of once
    per row: the driver's cost is per array element (~0.6 us for a timestamp). Should a batch's rows differ
    there after all, the column travels as an array like the others."""
    if not rows:
        return None
    values = columns(rows, len(fields))
    # list.count compares by identity first: a batch's one `now` object is counted at C speed.
    scalar = [i for i, f in enumerate(fields) if f in same and values[i].count(values[i][0]) == len(rows)]
    arrays = [i for i in range(len(fields)) if i not in scalar]
    wire = ["text" if types[i] == "jsonb" else types[i] for i in arrays]
    params = {i: f"${len(arrays) + n + 1}::{types[i]}" for n, i in enumerate(scalar)}
    select = ", ".join(
        params.get(i) or (f"{f}::jsonb" if types[i] == "jsonb" else f) for i, f in enumerate(fields)
    )
    unnested = unnest([fields[i] for i in arrays], wire)
    sql = f"INSERT INTO {table} ({', '.join(fields)}) SELECT {select} FROM ({unnested}) AS r"
    return Write(f"insert {table}", sql, (*(values[i] for i in arrays), *(values[i][0] for i in scalar)))


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
