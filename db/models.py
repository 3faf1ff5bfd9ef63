"""SQLAlchemy 2 table models. API shapes live in contracts/, never here."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        CheckConstraint("stock_quantity >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved_quantity >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved_quantity <= stock_quantity", name="available_not_negative"),
        CheckConstraint("min_stock_level >= 0", name="min_level_not_negative"),
        CheckConstraint("cost_price IS NULL OR cost_price >= 0", name="cost_not_negative"),
        CheckConstraint("alert_state IN ('ok', 'low', 'out', 'over')", name="alert_state_known"),
        Index("ix_items_category", "category"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(100))
    stock_quantity: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    reserved_quantity: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    weight_grams: Mapped[int | None] = mapped_column(BigInteger)
    dimensions: Mapped[str | None] = mapped_column(String(100))
    cost_price: Mapped[Decimal | None] = mapped_column(Numeric(18, 4))
    min_stock_level: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    max_stock_level: Mapped[int | None] = mapped_column(BigInteger)
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    is_trackable: Mapped[bool] = mapped_column(server_default=text("true"))
    alert_state: Mapped[str] = mapped_column(String(8), server_default=text("'ok'"))
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("1"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Location(Base):
    """A place that holds stock. 'default' (made by revision 0011) always exists and stays active."""

    __tablename__ = "locations"
    __table_args__ = (
        CheckConstraint("code ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$'", name="code_pattern"),
        CheckConstraint("kind IN ('warehouse', 'store', 'virtual')", name="kind_known"),
        CheckConstraint("code <> 'default' OR is_active", name="default_active"),
    )

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class ItemStock(Base):
    """Stock of one item at one location. The item's stock_quantity / reserved_quantity are the sums over
    its rows here, kept so in the same statement. NULL levels follow the item's."""

    __tablename__ = "item_stock"
    __table_args__ = (
        CheckConstraint("reserved >= 0 AND on_hand >= reserved", name="available_not_negative"),
        CheckConstraint(
            "(min_stock_level IS NULL OR min_stock_level >= 0)"
            " AND (max_stock_level IS NULL OR max_stock_level >= 0)",
            name="levels_not_negative",
        ),
        CheckConstraint("alert_state IN ('ok', 'low', 'out', 'over')", name="alert_state_known"),
        Index("ix_item_stock_location_sku", "location", "sku"),
    )

    sku: Mapped[str] = mapped_column(
        String(64), ForeignKey("items.sku", ondelete="CASCADE"), primary_key=True
    )
    location: Mapped[str] = mapped_column(Text, ForeignKey("locations.code"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(BigInteger)
    reserved: Mapped[int] = mapped_column(BigInteger)
    min_stock_level: Mapped[int | None] = mapped_column(BigInteger)
    max_stock_level: Mapped[int | None] = mapped_column(BigInteger)
    alert_state: Mapped[str] = mapped_column(String(8), server_default=text("'ok'"))
    updated_at: Mapped[datetime] = _now()


class ProcessedCommand(Base):
    """One row per command id seen inside the retention window; the claim that makes application
    exactly-once. Partitioned by the command's own issued_at (the same on every redelivery of a record, so
    a concurrent claim of it meets the primary key); an id claimed under another issued_at is found by the
    claim's look-up across partitions (db/command_log.insert_processed)."""

    __tablename__ = "processed_commands"
    __table_args__ = (
        CheckConstraint("status IN ('applied', 'rejected')", name="status_known"),
        Index("ix_processed_commands_applied_at", "applied_at", postgresql_using="brin"),
        {"postgresql_partition_by": "RANGE (issued_at)"},
    )

    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    command_type: Mapped[str] = mapped_column(String(64))
    sku: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    applied_at: Mapped[datetime] = _now()
    # Who sent the command (its envelope's actor): only they, or an admin, read its outcome at the edge.
    # None for commands processed before revision 0006.
    actor: Mapped[str | None] = mapped_column(String(200))


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("status IN ('active', 'released', 'fulfilled', 'expired')", name="status_known"),
        Index("ix_reservations_expiry", "expires_at", postgresql_where=text("status = 'active'")),
    )

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    reservation_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    command_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    location: Mapped[str] = mapped_column(
        Text, ForeignKey("locations.code"), server_default=text("'default'")
    )


class StockLedger(Base):
    """Append-only: every movement of on-hand or reserved stock. Monthly partitions, never dropped:
    old months can be archived with DETACH PARTITION."""

    __tablename__ = "stock_ledger"
    __table_args__ = (
        Index("ix_stock_ledger_sku_id", "sku", "id"),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    sku: Mapped[str] = mapped_column(String(64))
    delta: Mapped[int] = mapped_column(BigInteger)
    reserved_delta: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    reason: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    # The item's totals after the row's change (over every location).
    on_hand_after: Mapped[int] = mapped_column(BigInteger)
    reserved_after: Mapped[int] = mapped_column(BigInteger)
    location: Mapped[str] = mapped_column(Text, server_default=text("'default'"))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), primary_key=True, server_default=func.now()
    )


class OutboxEvent(Base):
    """Events written in the same transaction as the state they describe; the relay publishes them."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
        UniqueConstraint("event_id", "created_at", name="uq_outbox_event_id"),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))
    sku: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), primary_key=True, server_default=func.now()
    )
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when a destination refused the event for good (too large for the event topic, ...): the row
    # counts as published, so it no longer holds the rows after it; failed_reason names who refused.
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_reason: Mapped[str | None] = mapped_column(Text)
