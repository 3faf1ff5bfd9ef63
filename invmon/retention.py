"""`invmon db retention`: per partitioned table its size, partitions, oldest row and the next drop."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from rich.table import Table

from db import partitions
from db.partitions import Partition, Policy
from infra.settings import Settings

# The oldest row is read from the oldest non-empty partition; on a huge one that scan gives up.
_OLDEST_ROW_TIMEOUT = "3s"


@dataclass(frozen=True, slots=True)
class TableRetention:
    table: str
    bytes: int
    partitions: int
    oldest: Partition | None
    newest: Partition | None
    oldest_row: str
    in_default: int
    next_drop: str


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n //= 1024
    return f"{n} TB"


def _at(at: datetime | None) -> str:
    return "-inf" if at is None else f"{at:%Y-%m-%d %H:%M}"


def next_drop(policy: Policy, ranged: list[Partition], now: datetime) -> str:
    """Which partition goes next, and when (pure)."""
    if policy.retention_s is None:
        return "never (archive old months with DETACH PARTITION)"
    if not ranged:
        return "-"
    oldest = min(ranged, key=lambda p: p.upper or now)
    if oldest.upper is None:
        return "-"
    due = oldest.upper + timedelta(seconds=policy.retention_s)
    when = "next round (or held by a row still needed)" if due <= now else _at(due)
    return f"{oldest.name} at {when}"


async def _oldest_row(pg: asyncpg.Connection, policy: Policy, ranged: list[Partition]) -> str:
    """min(key) of the oldest non-empty partition (`ranged` is ordered by lower bound)."""
    for p in ranged:
        if await pg.fetchval(f"SELECT EXISTS (SELECT 1 FROM {p.name})"):
            try:
                async with pg.transaction():
                    await pg.execute(f"SET LOCAL statement_timeout = '{_OLDEST_ROW_TIMEOUT}'")
                    return _at(await pg.fetchval(f"SELECT min({policy.key}) FROM {p.name}"))
            except asyncpg.QueryCanceledError:
                return f">= {_at(p.lower)}"
    return "-"


async def collect(settings: Settings) -> list[TableRetention]:
    dsn = settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    pg = await asyncpg.connect(dsn, server_settings={"TimeZone": "UTC"})
    try:
        now: datetime = await pg.fetchval("SELECT now()")
        out = []
        for policy in partitions.policies(settings):
            existing = await partitions.partitions(pg, policy.table)
            ranged = [p for p in existing if not p.default]
            default = next((p.name for p in existing if p.default), None)
            size = await pg.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits"
                " WHERE inhparent = $1::regclass",
                policy.table,
            )
            by_lower = sorted(ranged, key=lambda p: (p.lower is not None, p.lower or now))
            out.append(
                TableRetention(
                    policy.table,
                    int(size),
                    len(ranged),
                    by_lower[0] if by_lower else None,
                    by_lower[-1] if by_lower else None,
                    await _oldest_row(pg, policy, by_lower),
                    int(await pg.fetchval(f"SELECT count(*) FROM {default}")) if default else 0,
                    next_drop(policy, ranged, now),
                )
            )
        return out
    finally:
        await pg.close()


def render(rows: list[TableRetention]) -> Table:
    table = Table(
        "table", "size", "partitions", "oldest", "newest (up to)", "oldest row", "in DEFAULT", "next drop",
        title="Retention by partition",
    )  # fmt: skip
    for r in rows:
        table.add_row(
            r.table,
            _size(r.bytes),
            str(r.partitions),
            f"{r.oldest.name} (from {_at(r.oldest.lower)})" if r.oldest else "-",
            _at(r.newest.upper) if r.newest else "-",
            r.oldest_row,
            str(r.in_default),
            r.next_drop,
        )
    return table
