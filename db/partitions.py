"""Time partitions of the growing tables: created ahead, dropped whole once expired, never DELETEd.

The plan (which ranges to create, which partitions have expired) is pure; `maintain` applies it under the
scheduler's advisory lock. A partition is dropped only after it is locked and found to hold no row that is
still needed (an unpublished outbox row, a pending delivery, a command id applied inside the window).
Rows whose key falls outside every range land in the table's DEFAULT partition, so an insert never fails;
the next round moves them into the partition it creates for them, and logs them while they stay.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from infra.settings import Settings

log = structlog.get_logger("invmon.partitions")

MONTH = 0  # span value of the tables partitioned by calendar month
AHEAD_SPANS = 3  # partitions kept ready beyond the current one
MAINTENANCE_LOCK_KEY = 0x1A7E_9A27
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Policy:
    table: str
    key: str  # the partition key column
    span_s: int  # MONTH for calendar months
    retention_s: int | None  # None: never dropped (the audit trail)
    # Rows that keep their partition alive past retention; `$1` is the retention cutoff.
    needed: str | None = None


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    lower: datetime | None  # None: MINVALUE
    upper: datetime | None  # None: MAXVALUE
    default: bool = False


@dataclass(frozen=True, slots=True)
class Range:
    lower: datetime
    upper: datetime

    def name(self, table: str) -> str:
        return f"{table}_p{self.lower:%Y%m%d%H%M%S}"


def policies(settings: Settings) -> list[Policy]:
    return [
        Policy(
            "outbox",
            "created_at",
            settings.partition_span_outbox_s,
            settings.retention_outbox_s,
            "published_at IS NULL",
        ),
        # A late record (issued long before it was applied) keeps its claim for a whole window too.
        Policy(
            "processed_commands",
            "issued_at",
            settings.partition_span_processed_s,
            settings.retention_processed_s,
            "applied_at >= $1",
        ),
        Policy(
            "notification_deliveries",
            "event_at",
            settings.partition_span_notifications_s,
            settings.retention_notifications_s,
            "status = 'pending'",
        ),
        Policy(
            "notification_attempts",
            "attempted_at",
            settings.partition_span_notifications_s,
            settings.retention_notifications_s,
        ),
        Policy("stock_ledger", "created_at", MONTH, None),
        Policy("price_history", "created_at", MONTH, None),
    ]


def floor(at: datetime, span_s: int) -> datetime:
    if span_s == MONTH:
        return datetime(at.year, at.month, 1, tzinfo=UTC)
    seconds = int((at - _EPOCH).total_seconds())
    return _EPOCH + timedelta(seconds=seconds - seconds % span_s)


def next_boundary(at: datetime, span_s: int) -> datetime:
    if span_s == MONTH:
        start = floor(at, MONTH)
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return floor(at, span_s) + timedelta(seconds=span_s)


def to_create(policy: Policy, existing: Sequence[Partition], now: datetime) -> list[Range]:
    """Ranges that make the partitions reach AHEAD_SPANS spans past the current one, contiguous after the
    newest existing range (a changed span takes effect from there on). A past gap is not filled: its
    rows go to DEFAULT."""
    uppers = [p.upper for p in existing if not p.default and p.upper is not None]
    current = floor(now, policy.span_s)
    cursor = max([current, *uppers])
    horizon = current
    for _ in range(AHEAD_SPANS + 1):
        horizon = next_boundary(horizon, policy.span_s)
    ranges = []
    while cursor < horizon:
        upper = next_boundary(cursor, policy.span_s)
        ranges.append(Range(cursor, upper))
        cursor = upper
    return ranges


def expired(policy: Policy, existing: Sequence[Partition], now: datetime) -> list[Partition]:
    """Partitions whose every possible key is older than the retention (oldest first); candidates only,
    `maintain` still checks them for needed rows."""
    if policy.retention_s is None:
        return []
    cutoff = now - timedelta(seconds=policy.retention_s)
    old = [p for p in existing if not p.default and p.upper is not None and p.upper <= cutoff]
    return sorted(old, key=lambda p: p.upper or cutoff)


def mis_spanned(policy: Policy, existing: Sequence[Partition], now: datetime) -> list[Partition]:
    """Current or future partitions of another span than the setting's (it changed): `maintain` recreates
    them at the new span if they are still empty, so a shorter span takes effect now rather than after
    the ranges made ahead at the old one (a soak shortens them)."""
    if policy.span_s == MONTH:
        return []
    return [
        p
        for p in existing
        if p.lower is not None
        and p.upper is not None
        and p.upper > now
        and (floor(p.upper, policy.span_s) != p.upper or (p.upper - p.lower).total_seconds() > policy.span_s)
    ]


_BOUND = re.compile(r"FROM \((.+?)\) TO \((.+?)\)")


def _bound(text: str) -> datetime | None:
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    return datetime.fromisoformat(text.strip("'")).astimezone(UTC)


def parse_bound(name: str, expr: str) -> Partition:
    if expr == "DEFAULT":
        return Partition(name, None, None, default=True)
    match = _BOUND.search(expr)
    if match is None:
        raise ValueError(f"{name}: unexpected partition bound {expr}")
    return Partition(name, _bound(match.group(1)), _bound(match.group(2)))


async def partitions(pg: asyncpg.Connection, table: str) -> list[Partition]:
    # Bounds print in the session's time zone: the caller's transaction sets UTC.
    rows = await pg.fetch(
        """
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = $1::regclass ORDER BY c.relname
        """,
        table,
    )
    return [parse_bound(r["relname"], r["bound"]) for r in rows]


def _literal(at: datetime) -> str:
    return f"'{at.isoformat()}'"


async def create(pg: asyncpg.Connection, policy: Policy, span: Range, default: str | None) -> None:
    """One new partition. Rows that already wait in DEFAULT for this range move into it first (else
    PostgreSQL refuses the new range), which is the only time rows move."""
    name = span.name(policy.table)
    bounds = f"FROM ({_literal(span.lower)}) TO ({_literal(span.upper)})"
    if default is not None:
        where = f"{policy.key} >= {_literal(span.lower)} AND {policy.key} < {_literal(span.upper)}"
        if await pg.fetchval(f"SELECT EXISTS (SELECT 1 FROM {default} WHERE {where})"):
            await pg.execute(
                f"CREATE TABLE {name} (LIKE {policy.table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
            moved = await pg.execute(
                f"WITH moved AS (DELETE FROM {default} WHERE {where} RETURNING *)"
                f" INSERT INTO {name} SELECT * FROM moved"
            )
            await pg.execute(f"ALTER TABLE {policy.table} ATTACH PARTITION {name} FOR VALUES {bounds}")
            log.warning("partition_rows_moved_from_default", partition=name, result=moved)
            return
    await pg.execute(f"CREATE TABLE {name} PARTITION OF {policy.table} FOR VALUES {bounds}")


async def purge_expired_outliers(
    pg: asyncpg.Connection, policy: Policy, default: str, cutoff: datetime
) -> int:
    """DEFAULT is never dropped, and rows keyed before every range (a sender's clock far behind) stay there:
    once expired and no longer needed they are deleted, the one DELETE retention makes. DEFAULT only ever
    holds such outliers, so this stays small; without it they would grow for ever."""
    needed = f" AND NOT ({policy.needed})" if policy.needed is not None else ""
    status = await pg.execute(f"DELETE FROM {default} WHERE {policy.key} < $1{needed}", cutoff)
    return int(status.rsplit(" ", 1)[-1])


async def drop_if_unneeded(
    pg: asyncpg.Connection, policy: Policy, partition: Partition, cutoff: datetime
) -> bool:
    # Locked before the check: nothing (an operator's retry of a delivery, ...) can make a row needed
    # between the check and the drop.
    await pg.execute(f"LOCK TABLE {partition.name} IN ACCESS EXCLUSIVE MODE")
    if policy.needed is not None:
        args = [cutoff] if "$1" in policy.needed else []
        sql = f"SELECT EXISTS (SELECT 1 FROM {partition.name} WHERE {policy.needed})"
        if await pg.fetchval(sql, *args):
            log.info("partition_kept", partition=partition.name, reason="holds rows still needed")
            return False
    await pg.execute(f"DROP TABLE {partition.name}")
    return True


@dataclass(slots=True)
class RoundReport:
    created: list[str]
    dropped: list[str]
    in_default: dict[str, int]
    respanned: list[str] = field(default_factory=list)  # empty partitions of an old span, recreated
    purged: dict[str, int] = field(default_factory=dict)  # expired rows deleted from DEFAULT


async def maintain_table(pg: asyncpg.Connection, policy: Policy, now: datetime, report: RoundReport) -> None:
    if not await pg.fetchval("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass($1)", policy.table):
        return  # a database below revision 0010
    existing = await partitions(pg, policy.table)
    respanned = False
    for partition in mis_spanned(policy, existing, now):
        await pg.execute(f"LOCK TABLE {partition.name} IN ACCESS EXCLUSIVE MODE")
        if not await pg.fetchval(f"SELECT EXISTS (SELECT 1 FROM {partition.name})"):
            await pg.execute(f"DROP TABLE {partition.name}")
            report.respanned.append(partition.name)
            respanned = True
    if respanned:
        existing = await partitions(pg, policy.table)
    default = next((p.name for p in existing if p.default), None)
    for span in to_create(policy, existing, now):
        await create(pg, policy, span, default)
        report.created.append(span.name(policy.table))
    if policy.retention_s is not None:
        cutoff = now - timedelta(seconds=policy.retention_s)
        for partition in expired(policy, existing, now):
            if await drop_if_unneeded(pg, policy, partition, cutoff):
                report.dropped.append(partition.name)
        if default is not None and (purged := await purge_expired_outliers(pg, policy, default, cutoff)):
            report.purged[policy.table] = purged
    if default is not None:
        count = int(await pg.fetchval(f"SELECT count(*) FROM (SELECT 1 FROM {default} LIMIT 10000) d"))
        if count:
            report.in_default[policy.table] = count


async def maintain(pg: asyncpg.Connection, settings: Settings, now: datetime | None = None) -> RoundReport:
    """One round over every partitioned table, each table in a short transaction of its own under the
    advisory lock (another process holding it is doing that table now): no lock on one table is held while
    waiting for another, which a worker's batch could hold in the other order. A table whose lock cannot be
    had within lock_timeout waits for the next round; the others go on. `now`: the database's clock unless
    given (tests move it)."""
    report = RoundReport([], [], {})
    for policy in policies(settings):
        try:
            async with pg.transaction():
                await pg.execute("SET LOCAL TimeZone = 'UTC'")
                await pg.execute("SET LOCAL lock_timeout = '2s'")
                if not await pg.fetchval("SELECT pg_try_advisory_xact_lock($1)", MAINTENANCE_LOCK_KEY):
                    continue
                at = now if now is not None else await pg.fetchval("SELECT now()")
                await maintain_table(pg, policy, at, report)
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError) as error:
            log.warning("partition_maintenance_deferred", table=policy.table, error=repr(error))
    if report.created or report.dropped or report.respanned or report.purged:
        log.info(
            "partitions_maintained",
            created=report.created,
            dropped=report.dropped,
            respanned=report.respanned,
            purged_from_default=report.purged,
        )
    for table, count in report.in_default.items():
        # Keys outside every range: a sender's clock far off, or a gap while maintenance did not run.
        log.warning("rows_in_default_partition", table=table, rows=count)
    return report


async def maintain_now(settings: Settings) -> RoundReport:
    """One round on a connection of its own: `invmon db upgrade` runs it, so the ranges exist before any
    worker starts."""
    dsn = settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    pg = await asyncpg.connect(dsn)
    try:
        return await maintain(pg, settings)
    finally:
        await pg.close()
