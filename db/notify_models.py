"""Notification tables: subscriptions, one delivery per (event, subscription), and every attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Subscription(Base):
    __tablename__ = "notification_subscriptions"
    __table_args__ = (
        CheckConstraint("kind IN ('email', 'webhook')", name="kind_known"),
        CheckConstraint(
            "(kind = 'email' AND cardinality(recipients) > 0) OR (kind = 'webhook' AND url IS NOT NULL "
            "AND secret IS NOT NULL)",
            name="channel_complete",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default=text("'{}'"))
    skus: Mapped[list[str]] = mapped_column(ARRAY(String(64)), server_default=text("'{}'"))
    categories: Mapped[list[str]] = mapped_column(ARRAY(String(100)), server_default=text("'{}'"))
    # Per-location alerts wanted (workers.notifier.matching); added by revision 0011.
    locations: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    kind: Mapped[str] = mapped_column(String(16))
    recipients: Mapped[list[str]] = mapped_column(ARRAY(String(320)), server_default=text("'{}'"))
    url: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[str | None] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    secret_rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Delivery(Base):
    """The unique (event, subscription) pair is the exactly-once claim of a notification. Partitioned by
    the event's own time (event_at), the same on every redelivery; the insert also looks the pair up
    across partitions (db/notify_repo.insert_deliveries)."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint(
            "event_id", "subscription_id", "event_at", name="uq_notification_deliveries_event_sub"
        ),
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status_known"),
        Index(
            "ix_notification_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")
        ),
        Index("ix_notification_deliveries_sub_created", "subscription_id", "created_at"),
        {"postgresql_partition_by": "RANGE (event_at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("notification_subscriptions.id", ondelete="CASCADE")
    )
    event_type: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(String(64))
    item_name: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    attempts_in_round: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    event_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), primary_key=True, server_default=func.now()
    )


class Attempt(Base):
    """Partitioned by attempted_at. No foreign key to its delivery: one to a partitioned table would need
    the delivery's partition key here; attempts expire by partition as their deliveries do."""

    __tablename__ = "notification_attempts"
    __table_args__ = (
        Index("ix_notification_attempts_delivery", "delivery_id", "id"),
        {"postgresql_partition_by": "RANGE (attempted_at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(BigInteger)
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))


class SkippedEvent(Base):
    """An event record the notifier could not turn into deliveries (not an event, or refused by PostgreSQL
    on its own), kept by reference: the record can be read again from its topic while retention lasts."""

    __tablename__ = "notifier_skipped_events"
    __table_args__ = (
        UniqueConstraint("topic", "partition", "offset", name="uq_notifier_skipped_events_origin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(249))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[bytes | None] = mapped_column(BYTEA)
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    head: Mapped[bytes] = mapped_column(BYTEA)  # the value's first KiB
    reason: Mapped[str] = mapped_column(Text)
    skipped_at: Mapped[datetime] = _now()
