"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-27 05:29:04.226597+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column("stock_quantity", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("reserved_quantity", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("weight_grams", sa.BigInteger(), nullable=True),
        sa.Column("dimensions", sa.String(length=100), nullable=True),
        sa.Column("cost_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("min_stock_level", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_stock_level", sa.BigInteger(), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("is_trackable", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("cost_price IS NULL OR cost_price >= 0", name=op.f("ck_items_cost_not_negative")),
        sa.CheckConstraint("min_stock_level >= 0", name=op.f("ck_items_min_level_not_negative")),
        sa.CheckConstraint(
            "reserved_quantity <= stock_quantity", name=op.f("ck_items_available_not_negative")
        ),
        sa.CheckConstraint("reserved_quantity >= 0", name=op.f("ck_items_reserved_not_negative")),
        sa.CheckConstraint("stock_quantity >= 0", name=op.f("ck_items_on_hand_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_items")),
        sa.UniqueConstraint("sku", name=op.f("uq_items_sku")),
    )
    op.create_index("ix_items_category", "items", ["category"], unique=False)
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "processed_commands",
        sa.Column("command_id", sa.UUID(), nullable=False),
        sa.Column("command_type", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("applied_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('applied', 'rejected')", name=op.f("ck_processed_commands_status_known")
        ),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_processed_commands")),
    )
    op.create_table(
        "stock_ledger",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("command_id", sa.UUID(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("reserved_delta", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("on_hand_after", sa.BigInteger(), nullable=False),
        sa.Column("reserved_after", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_ledger")),
    )
    op.create_index("ix_stock_ledger_sku_id", "stock_ledger", ["sku", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_stock_ledger_sku_id", table_name="stock_ledger")
    op.drop_table("stock_ledger")
    op.drop_table("processed_commands")
    op.drop_index(
        "ix_outbox_unpublished", table_name="outbox", postgresql_where=sa.text("published_at IS NULL")
    )
    op.drop_table("outbox")
    op.drop_index("ix_items_category", table_name="items")
    op.drop_table("items")
