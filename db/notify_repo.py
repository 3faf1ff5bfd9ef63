"""Notifier queries: what the consumer writes, what the dispatcher claims and records. Raw asyncpg (array
parameters, LISTEN, SKIP LOCKED); the edge's admin queries live in notify_admin.py."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

DELIVERIES_CHANNEL = "invmon_deliveries"


@dataclass(frozen=True, slots=True)
class SubscriptionFilter:
    id: uuid.UUID
    event_types: list[str]
    skus: list[str]
    categories: list[str]
    locations: list[str]


async def enabled_filters(pg: asyncpg.Connection) -> list[SubscriptionFilter]:
    rows = await pg.fetch(
        "SELECT id, event_types, skus, categories, locations FROM notification_subscriptions WHERE enabled"
    )
    return [
        SubscriptionFilter(r["id"], r["event_types"], r["skus"], r["categories"], r["locations"])
        for r in rows
    ]


async def items(pg: asyncpg.Connection, skus: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """(name, category) of each known SKU."""
    rows = await pg.fetch("SELECT sku, name, category FROM items WHERE sku = ANY($1::text[])", list(skus))
    return {r["sku"]: (r["name"], r["category"]) for r in rows}


class NewDelivery(NamedTuple):
    event_id: uuid.UUID
    subscription_id: uuid.UUID
    event_type: str
    sku: str
    item_name: str | None
    payload: str  # the event's JSON text
    event_at: datetime | None = None  # the partition key: the event's own time (now() when unknown)


async def insert_deliveries(pg: asyncpg.Connection, rows: Sequence[NewDelivery]) -> int:
    """Claim each (event, subscription) once: a redelivered event finds its rows and adds nothing."""
    if not rows:
        return 0
    inserted = await pg.fetch(
        """
        INSERT INTO notification_deliveries
            (event_id, subscription_id, event_type, sku, item_name, payload, next_attempt_at, event_at)
        SELECT e, s, t, k, n, p::jsonb, now(), coalesce(a, now())
        FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                    $7::timestamptz[]) AS r(e, s, t, k, n, p, a)
        -- The unique key includes the partition key; the look-up also finds a claim in another partition.
        WHERE NOT EXISTS (
            SELECT 1 FROM notification_deliveries d WHERE d.event_id = r.e AND d.subscription_id = r.s
        )
        ON CONFLICT (event_id, subscription_id, event_at) DO NOTHING
        RETURNING id
        """,
        *(list(column) for column in zip(*rows, strict=True)),
    )
    if inserted:
        # Delivered at commit: the dispatcher wakes exactly when the rows become visible.
        await pg.execute("SELECT pg_notify($1, '')", DELIVERIES_CHANNEL)
    return len(inserted)


def storable(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL. An error may quote what a receiver or server answered; refusing it
    would leave the delivery pending with no attempt, the refusal repeating on every claim."""
    return None if text is None else text.replace("\x00", "\\x00")


class SkippedRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str


HEAD_BYTES = 1024


async def insert_skipped(pg: asyncpg.Connection, rows: Sequence[SkippedRecord]) -> None:
    """By reference (origin, size, sha256, the first KiB): the record itself may be as large as the topic
    allows. A redelivered batch finds its rows there and adds nothing."""
    await pg.executemany(
        """
        INSERT INTO notifier_skipped_events (topic, partition, "offset", key, size, sha256, head, reason)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        ON CONFLICT (topic, partition, "offset") DO NOTHING
        """,
        [
            (
                r.topic,
                r.partition,
                r.offset,
                r.key,
                len(r.value),
                hashlib.sha256(r.value).hexdigest(),
                r.value[:HEAD_BYTES],
                (storable(r.reason) or "")[:2000],  # a reason may quote the record
            )
            for r in rows
        ],
    )


@dataclass(frozen=True, slots=True)
class Due:
    id: int
    event_id: uuid.UUID
    event_type: str
    sku: str
    item_name: str | None
    payload: str
    attempts: int
    attempts_in_round: int
    subscription_id: uuid.UUID
    kind: str
    url: str | None
    secrets: list[str]  # newest first; two while a rotated-out secret is still valid
    recipients: list[str]
    enabled: bool
    failing_since: datetime | None


async def claim_due(pg: asyncpg.Connection, limit: int, lease_s: float) -> list[Due]:
    """Take due deliveries for `lease_s` by moving their next attempt past the lease: concurrent
    dispatchers skip them, and if this process dies mid-send they fall due again (at least once)."""
    rows = await pg.fetch(
        """
        WITH due AS (
            SELECT id, event_at FROM notification_deliveries
            WHERE status = 'pending' AND next_attempt_at <= clock_timestamp()
            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        UPDATE notification_deliveries d
        SET next_attempt_at = clock_timestamp() + make_interval(secs => $2)
        FROM due, notification_subscriptions s
        -- The whole primary key (id, event_at): one index probe per partition, not a scan of ids.
        WHERE d.id = due.id AND d.event_at = due.event_at AND s.id = d.subscription_id
        RETURNING d.id, d.event_id, d.event_type, d.sku, d.item_name, d.payload::text AS payload,
                  d.attempts, d.attempts_in_round, d.subscription_id, s.kind, s.url, s.secret,
                  CASE WHEN s.previous_secret_valid_until > clock_timestamp() THEN s.previous_secret END
                      AS previous_secret,
                  s.recipients, s.enabled, s.failing_since
        """,
        limit,
        lease_s,
    )
    return [
        Due(
            r["id"],
            r["event_id"],
            r["event_type"],
            r["sku"],
            r["item_name"],
            r["payload"],
            r["attempts"],
            r["attempts_in_round"],
            r["subscription_id"],
            r["kind"],
            r["url"],
            [s for s in (r["secret"], r["previous_secret"]) if s],
            r["recipients"],
            r["enabled"],
            r["failing_since"],
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: int
    subscription_id: uuid.UUID
    attempted_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    outcome: str  # the policy verdict
    status: str  # the delivery's new status
    next_attempt_at: datetime | None
    succeeded: bool
    disable_reason: str | None  # disable the subscription with this reason


async def record(pg: asyncpg.Connection, o: Outcome) -> None:
    """The attempt, the delivery's new state and the endpoint's health, in one transaction."""
    error, reason = storable(o.error), storable(o.disable_reason)
    async with pg.transaction():
        await pg.execute(
            """
            INSERT INTO notification_attempts
                (delivery_id, attempted_at, status_code, latency_ms, error, outcome)
            VALUES ($1, $2, $3, $4, $5, $6)
            """,
            o.delivery_id,
            o.attempted_at,
            o.status_code,
            o.latency_ms,
            error,
            o.outcome,
        )
        await pg.execute(
            """
            UPDATE notification_deliveries
            SET status = $2, attempts = attempts + 1, attempts_in_round = attempts_in_round + 1,
                next_attempt_at = $3, last_error = $4, updated_at = clock_timestamp()
            WHERE id = $1
            """,
            o.delivery_id,
            o.status,
            o.next_attempt_at,
            error,
        )
        await pg.execute(
            """
            UPDATE notification_subscriptions
            SET failing_since = CASE WHEN $2 THEN NULL ELSE coalesce(failing_since, $3) END,
                enabled = enabled AND $4::text IS NULL,
                disabled_reason = coalesce($4, disabled_reason),
                updated_at = clock_timestamp()
            WHERE id = $1
            """,
            o.subscription_id,
            o.succeeded,
            o.attempted_at,
            reason,
        )


async def fail_disabled(pg: asyncpg.Connection, delivery_id: int) -> None:
    """A delivery of a disabled subscription is not sent; it can be replayed once re-enabled."""
    await pg.execute(
        """
        UPDATE notification_deliveries SET status = 'failed', next_attempt_at = NULL,
            last_error = 'subscription disabled', updated_at = clock_timestamp()
        WHERE id = $1
        """,
        delivery_id,
    )


async def seconds_to_next_due(pg: asyncpg.Connection) -> float | None:
    value: Any = await pg.fetchval(
        """
        SELECT extract(epoch FROM min(next_attempt_at) - clock_timestamp())::float8
        FROM notification_deliveries WHERE status = 'pending'
        """
    )
    return None if value is None else float(value)


async def backlog(pg: asyncpg.Connection) -> int:
    return int(await pg.fetchval("SELECT count(*) FROM notification_deliveries WHERE status = 'pending'"))
