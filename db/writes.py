"""A batch's writes sent as one statement: each repo builds a `Write`, `send` joins them with data-modifying
CTEs. On loopback a round trip costs more than most of the writes, and a batch used to pay one or two per
table.

Within one statement every sub-statement sees the same snapshot and the order they run in is unspecified,
so no two writes of a batch may touch the same row. AFTER triggers (foreign keys among them) fire once the
whole statement is done, so a row may reference a row inserted by a sibling write.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class Write:
    """One INSERT/UPDATE with its own $1..$n placeholders and their arguments, not yet sent.

    `expected`: the write ends in `RETURNING 1` and must return exactly this many rows, else the batch
    fails. `notify`: a channel to pg_notify once the write is in (delivered at commit).
    """

    label: str
    sql: str
    args: tuple[Any, ...]
    expected: int | None = None
    notify: str | None = None


def present(*writes: Write | None) -> list[Write]:
    """The writes that have rows (a repo returns None for an empty batch of rows)."""
    return [w for w in writes if w is not None]


class WriteCountMismatch(RuntimeError):
    """A counted write changed another number of rows than it had to: the transaction must not commit."""


def _renumber(sql: str, offset: int, count: int) -> str:
    def shift(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if not 1 <= n <= count:
            raise ValueError(f"${n} in a write with {count} arguments: {sql[:80]}")
        return f"${n + offset}"

    return _PLACEHOLDER.sub(shift, sql)


def compose(writes: Sequence[Write]) -> tuple[str, list[Any]]:
    """One statement for `writes`; it returns one row with the row count of each counted write, in order.

    The text depends only on which writes are present, never on their row counts, so the prepared statements
    a worker accumulates stay few.
    """
    if not writes:
        raise ValueError("nothing to write")
    ctes: list[str] = []
    outputs: list[str] = []
    args: list[Any] = []
    channels: list[str] = []
    for i, w in enumerate(writes):
        ctes.append(f"w{i} AS ({_renumber(w.sql, len(args), len(w.args))})")
        args.extend(w.args)
        if w.expected is not None:
            outputs.append(f"(SELECT count(*) FROM w{i})")
        if w.notify is not None and w.notify not in channels:
            channels.append(w.notify)
    for channel in channels:
        args.append(channel)
        outputs.append(f"pg_notify(${len(args)}, '')")
    return f"WITH {', '.join(ctes)} SELECT {', '.join(outputs) or 'NULL'}", args


def check_counts(writes: Sequence[Write], row: Sequence[Any]) -> None:
    counted = [w for w in writes if w.expected is not None]
    for w, got in zip(counted, row, strict=False):
        if got != w.expected:
            raise WriteCountMismatch(f"{w.label}: expected {w.expected} rows, wrote {got}")


async def send(pg: asyncpg.Connection, writes: Sequence[Write]) -> None:
    """All of `writes` in one round trip (nothing when there are none)."""
    if not writes:
        return
    sql, args = compose(writes)
    row = await pg.fetchrow(sql, *args)
    if row is None:
        raise WriteCountMismatch("the batch statement returned no row")
    check_counts(writes, tuple(row))
