"""The operations reads: what the metrics, `invmon status` and the admin operations page show about the
pipeline's health. Plain values out, over any asyncpg connection (db.command_log.transaction gives one);
each is one bounded statement, cheap enough for a refresh every few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from db.dead_letter_repo import category_sql


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    unpublished: int
    oldest_age_s: float | None  # None: nothing waits


@dataclass(frozen=True, slots=True)
class FailingDelivery:
    subscription: str
    channel: str  # email | webhook
    target: str  # the webhook URL, or the recipients
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None  # None: given up (failed)
    disabled: bool  # the subscription is disabled


async def outbox_backlog(conn: asyncpg.Connection) -> OutboxBacklog:
    # Reads the partial index ix_outbox_unpublished, however large the published history is.
    row = await conn.fetchrow(
        """
        SELECT count(*) AS unpublished,
               extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS oldest_age_s
        FROM outbox WHERE published_at IS NULL
        """
    )
    if row is None:  # an aggregate always returns a row; for the type checker
        return OutboxBacklog(0, None)
    age = row["oldest_age_s"]
    return OutboxBacklog(int(row["unpublished"]), None if age is None else max(float(age), 0.0))


async def dead_letters_by_reason(conn: asyncpg.Connection) -> dict[str, int]:
    """Dead-lettered command records by reason category (db.dead_letter_repo.CATEGORIES), never free text."""
    rows = await conn.fetch(
        f"SELECT {category_sql('reason')} AS category, count(*) AS n FROM dead_letters GROUP BY 1"
    )
    return {str(r["category"]): int(r["n"]) for r in rows}


async def deliveries_by_channel_status(conn: asyncpg.Connection) -> dict[tuple[str, str], int]:
    """Notification deliveries by (channel, status): email|webhook, pending|delivered|failed."""
    rows = await conn.fetch(
        """
        SELECT s.kind AS channel, d.status, count(*) AS n
        FROM notification_deliveries d JOIN notification_subscriptions s ON s.id = d.subscription_id
        GROUP BY 1, 2
        """
    )
    return {(str(r["channel"]), str(r["status"])): int(r["n"]) for r in rows}


async def failing_deliveries(conn: asyncpg.Connection, limit: int) -> list[FailingDelivery]:
    """Deliveries that failed for good, or are pending after a failed attempt; the most recent first."""
    rows = await conn.fetch(
        """
        SELECT s.name, s.kind, coalesce(s.url, array_to_string(s.recipients, ', ')) AS target,
               d.attempts, d.last_error, d.next_attempt_at, NOT s.enabled AS disabled
        FROM notification_deliveries d JOIN notification_subscriptions s ON s.id = d.subscription_id
        WHERE d.status = 'failed' OR (d.status = 'pending' AND d.last_error IS NOT NULL)
        ORDER BY d.updated_at DESC, d.id DESC
        LIMIT $1
        """,
        limit,
    )
    return [
        FailingDelivery(
            str(r["name"]),
            str(r["kind"]),
            str(r["target"] or ""),
            int(r["attempts"]),
            r["last_error"],
            r["next_attempt_at"],
            bool(r["disabled"]),
        )
        for r in rows
    ]


async def items_by_alert_state(conn: asyncpg.Connection) -> dict[str, int]:
    """Active items by their stored alert state (ok, low, out, over)."""
    rows = await conn.fetch(
        "SELECT alert_state, count(*) AS n FROM items WHERE is_active GROUP BY alert_state"
    )
    return {str(r["alert_state"]): int(r["n"]) for r in rows}


async def pending_price_approvals(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM price_changes WHERE status = 'pending'"))


async def table_bytes(conn: asyncpg.Connection) -> dict[str, int]:
    """Bytes on disk (with indexes and TOAST) of each of our tables; a partitioned table's partitions are
    summed under its own name."""
    rows = await conn.fetch(
        """
        SELECT c.relname AS name, sum(pg_total_relation_size(coalesce(t.relid, c.oid)))::bigint AS bytes
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        -- no rows for a plain table: the table itself then
        LEFT JOIN LATERAL pg_partition_tree(c.oid) t ON true
        WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        GROUP BY c.relname
        """
    )
    return {str(r["name"]): int(r["bytes"]) for r in rows}
