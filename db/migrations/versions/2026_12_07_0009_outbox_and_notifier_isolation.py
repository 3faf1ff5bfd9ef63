"""outbox rows a destination refused; event records the notifier skipped

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 16:45:00.000000+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE outbox waits behind the relay's reads otherwise; fail fast and let the operator retry.
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.add_column("outbox", sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("failed_reason", sa.Text(), nullable=True))
    op.create_table(
        "notifier_skipped_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("key", postgresql.BYTEA(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("head", postgresql.BYTEA(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("skipped_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifier_skipped_events")),
        sa.UniqueConstraint("topic", "partition", "offset", name="uq_notifier_skipped_events_origin"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.drop_table("notifier_skipped_events")
    op.drop_column("outbox", "failed_reason")
    op.drop_column("outbox", "failed_at")
