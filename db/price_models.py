"""Price tables. Money is NUMERIC; the window table refuses overlaps itself (exclusion constraint)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Numeric, String, Text, func, text
from sqlalchemy.dialects.postgresql import UUID, ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base

MONEY = Numeric(18, 4)
PCT = Numeric(12, 2)


class Price(Base):
    """Current price of one SKU in one currency: the base terms and what is in force now."""

    __tablename__ = "prices"
    __table_args__ = (
        CheckConstraint("selling_price >= 0 AND (discount_price IS NULL OR discount_price <= selling_price)",
                        name="terms_valid"),
        CheckConstraint("margin_state IN ('ok', 'below')", name="margin_state_known"),
    )  # fmt: skip

    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    selling_price: Mapped[Decimal | None] = mapped_column(MONEY)
    discount_price: Mapped[Decimal | None] = mapped_column(MONEY)
    cost_price: Mapped[Decimal | None] = mapped_column(MONEY)
    effective_price: Mapped[Decimal | None] = mapped_column(MONEY)
    effective_change_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    margin_state: Mapped[str] = mapped_column(String(8), server_default=text("'ok'"))
    version: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PriceWindow(Base):
    """A scheduled price. Open windows (scheduled or active) of one SKU and currency never overlap."""

    __tablename__ = "price_windows"
    __table_args__ = (
        ExcludeConstraint(
            (text("sku"), "="),
            (text("currency"), "="),
            (text("tstzrange(effective_from, effective_until, '[)')"), "&&"),
            name="ex_price_windows_no_overlap",
            using="gist",
            where=text("status IN ('scheduled', 'active')"),
        ),
        CheckConstraint("status IN ('scheduled', 'active', 'expired', 'cancelled')", name="status_known"),
        CheckConstraint("effective_until IS NULL OR effective_until > effective_from", name="window_ordered"),
        Index("ix_price_windows_due", "effective_from", postgresql_where=text("status = 'scheduled'")),
        Index("ix_price_windows_ending", "effective_until", postgresql_where=text("status = 'active'")),
    )

    change_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    selling_price: Mapped[Decimal] = mapped_column(MONEY)
    discount_price: Mapped[Decimal | None] = mapped_column(MONEY)
    cost_price: Mapped[Decimal | None] = mapped_column(MONEY)
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    effective_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(200))
    approved_by: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PriceChangeRequest(Base):
    """A SetPrice held for approval, and its decision."""

    __tablename__ = "price_changes"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status_known"),
        Index("ix_price_changes_pending", "sku", postgresql_where=text("status = 'pending'")),
    )

    change_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    selling_price: Mapped[Decimal] = mapped_column(MONEY)
    discount_price: Mapped[Decimal | None] = mapped_column(MONEY)
    cost_price: Mapped[Decimal | None] = mapped_column(MONEY)
    effective_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    effective_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    change_type: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    why: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class PriceHistory(Base):
    """Append-only: one row per change of a price in force. Monthly partitions, never dropped: old months
    can be archived with DETACH PARTITION."""

    __tablename__ = "price_history"
    __table_args__ = (
        Index("ix_price_history_sku_time", "sku", "currency", "created_at", "id"),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    change_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    command_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    sku: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
    old_price: Mapped[Decimal | None] = mapped_column(MONEY)
    new_price: Mapped[Decimal] = mapped_column(MONEY)
    change_amount: Mapped[Decimal | None] = mapped_column(MONEY)
    change_pct: Mapped[Decimal | None] = mapped_column(PCT)
    selling_price: Mapped[Decimal] = mapped_column(MONEY)
    discount_price: Mapped[Decimal | None] = mapped_column(MONEY)
    cost_price: Mapped[Decimal | None] = mapped_column(MONEY)
    margin_pct: Mapped[Decimal | None] = mapped_column(PCT)
    change_type: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    effective_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    effective_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    requested_by: Mapped[str] = mapped_column(String(200))
    approved_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
