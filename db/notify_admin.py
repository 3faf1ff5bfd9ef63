"""The edge's notification admin queries: subscriptions, deliveries with their attempts, replays."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from db.notify_repo import DELIVERIES_CHANNEL

SUBSCRIPTION_COLUMNS = """
    id, name, event_types, skus, categories, locations, kind, recipients, url, enabled, disabled_reason,
    failing_since, secret_rotated_at, previous_secret_valid_until, created_at, updated_at
"""
UPDATABLE = frozenset(
    {"name", "event_types", "skus", "categories", "locations", "recipients", "url", "enabled"}
)


async def create_subscription(pg: asyncpg.Connection, values: Mapping[str, Any]) -> asyncpg.Record:
    row: asyncpg.Record | None = await pg.fetchrow(
        f"""
        INSERT INTO notification_subscriptions
            (id, name, event_types, skus, categories, locations, kind, recipients, url, secret, enabled)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        RETURNING {SUBSCRIPTION_COLUMNS}
        """,
        uuid.uuid4(),
        values["name"],
        values["event_types"],
        values["skus"],
        values["categories"],
        values["locations"],
        values["kind"],
        values["recipients"],
        values["url"],
        values["secret"],
        values["enabled"],
    )
    if row is None:
        raise RuntimeError("INSERT ... RETURNING returned no row")
    return row


async def subscriptions(pg: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await pg.fetch(f"SELECT {SUBSCRIPTION_COLUMNS} FROM notification_subscriptions ORDER BY created_at")
    )


async def subscription(pg: asyncpg.Connection, sub_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pg.fetchrow(
        f"SELECT {SUBSCRIPTION_COLUMNS} FROM notification_subscriptions WHERE id = $1", sub_id
    )
    return row


async def update_subscription(
    pg: asyncpg.Connection, sub_id: uuid.UUID, changes: Mapping[str, Any]
) -> asyncpg.Record | None:
    """Apply `changes` (keys from UPDATABLE). Re-enabling forgets why and since when it was failing."""
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    names = sorted(changes)
    assignments = [f"{name} = ${i + 2}" for i, name in enumerate(names)]
    if changes.get("enabled") is True:
        assignments += ["disabled_reason = NULL", "failing_since = NULL"]
    assignments.append("updated_at = clock_timestamp()")
    row: asyncpg.Record | None = await pg.fetchrow(
        f"UPDATE notification_subscriptions SET {', '.join(assignments)} WHERE id = $1 "
        f"RETURNING {SUBSCRIPTION_COLUMNS}",
        sub_id,
        *(changes[name] for name in names),
    )
    return row


async def delete_subscription(pg: asyncpg.Connection, sub_id: uuid.UUID) -> bool:
    status: str = await pg.execute("DELETE FROM notification_subscriptions WHERE id = $1", sub_id)
    return status.endswith(" 1")


async def rotate_secret(
    pg: asyncpg.Connection, sub_id: uuid.UUID, secret: str, overlap_s: float
) -> asyncpg.Record | None:
    """The current secret becomes the previous one and still signs for `overlap_s`."""
    row: asyncpg.Record | None = await pg.fetchrow(
        """
        UPDATE notification_subscriptions
        SET previous_secret = secret, secret = $2, secret_rotated_at = clock_timestamp(),
            previous_secret_valid_until = clock_timestamp() + make_interval(secs => $3),
            updated_at = clock_timestamp()
        WHERE id = $1 AND kind = 'webhook'
        RETURNING previous_secret_valid_until
        """,
        sub_id,
        secret,
        overlap_s,
    )
    return row


DELIVERY_COLUMNS = """
    d.id, d.subscription_id, d.event_id, d.event_type, d.sku, d.status, d.attempts, d.next_attempt_at,
    d.last_error, d.created_at,
    coalesce((SELECT json_agg(json_build_object(
        'attempted_at', a.attempted_at, 'status_code', a.status_code, 'latency_ms', a.latency_ms,
        'error', a.error, 'outcome', a.outcome) ORDER BY a.id)
      FROM notification_attempts a WHERE a.delivery_id = d.id), '[]')::text AS attempt_log
"""


async def deliveries(
    pg: asyncpg.Connection, sub_id: uuid.UUID, *, status: str | None, before_id: int | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await pg.fetch(
            f"""
            SELECT {DELIVERY_COLUMNS} FROM notification_deliveries d
            WHERE d.subscription_id = $1 AND ($2::text IS NULL OR d.status = $2)
              AND ($3::bigint IS NULL OR d.id < $3)
            ORDER BY d.id DESC LIMIT $4
            """,
            sub_id,
            status,
            before_id,
            limit,
        )
    )


async def delivery(pg: asyncpg.Connection, delivery_id: int) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pg.fetchrow(
        f"SELECT {DELIVERY_COLUMNS} FROM notification_deliveries d WHERE d.id = $1", delivery_id
    )
    return row


REPLAY = """
    UPDATE notification_deliveries
    SET status = 'pending', attempts_in_round = 0, next_attempt_at = clock_timestamp(),
        updated_at = clock_timestamp()
"""


async def replay(pg: asyncpg.Connection, delivery_id: int) -> bool:
    """Send it again from the start of the schedule (a pending one is simply made due now)."""
    status: str = await pg.execute(f"{REPLAY} WHERE id = $1", delivery_id)
    if status.endswith(" 1"):
        await pg.execute("SELECT pg_notify($1, '')", DELIVERIES_CHANNEL)
    return status.endswith(" 1")


async def replay_failed_since(pg: asyncpg.Connection, sub_id: uuid.UUID, since: datetime) -> int:
    status: str = await pg.execute(
        f"{REPLAY} WHERE subscription_id = $1 AND status = 'failed' AND created_at >= $2", sub_id, since
    )
    count = int(status.rsplit(" ", 1)[-1])
    if count:
        await pg.execute("SELECT pg_notify($1, '')", DELIVERIES_CHANNEL)
    return count
