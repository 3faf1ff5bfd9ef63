"""The admin audit trail: one row per admin action, appended and never changed (a trigger refuses UPDATE
and DELETE, so not even a bug in the app can rewrite history)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base


class AdminAudit(Base):
    __tablename__ = "admin_audit"
    __table_args__ = (
        # Keyset pagination walks (at, id) newest first; filters by actor or action use their own index.
        Index("ix_admin_audit_at_id", "at", "id"),
        Index("ix_admin_audit_actor_at", "actor", "at"),
        Index("ix_admin_audit_action_at", "action", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB)
    client: Mapped[str] = mapped_column(Text)
