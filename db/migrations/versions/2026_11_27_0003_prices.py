"""prices

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 05:57:24.426425+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Trusted since PostgreSQL 13, so the database owner may create it; the exclusion constraint needs it.
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    op.create_table(
        "price_changes",
        sa.Column("change_id", sa.UUID(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("selling_price", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("discount_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("cost_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("effective_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("change_type", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected')", name=op.f("ck_price_changes_status_known")
        ),
        sa.PrimaryKeyConstraint("change_id", name=op.f("pk_price_changes")),
    )
    op.create_index(
        "ix_price_changes_pending",
        "price_changes",
        ["sku"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "price_history",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("change_id", sa.UUID(), nullable=False),
        sa.Column("command_id", sa.UUID(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("old_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("new_price", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("change_amount", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("change_pct", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("selling_price", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("discount_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("cost_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("margin_pct", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("change_type", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("effective_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_price_history")),
    )
    op.create_index(
        "ix_price_history_sku_time", "price_history", ["sku", "currency", "created_at", "id"], unique=False
    )
    op.create_table(
        "price_windows",
        sa.Column("change_id", sa.UUID(), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("selling_price", sa.Numeric(precision=18, scale=4), nullable=False),
        sa.Column("discount_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("cost_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        postgresql.ExcludeConstraint(
            (sa.text("sku"), "="),
            (sa.text("currency"), "="),
            (sa.text("tstzrange(effective_from, effective_until, '[)')"), "&&"),
            where=sa.text("status IN ('scheduled', 'active')"),
            using="gist",
            name="ex_price_windows_no_overlap",
        ),
        sa.CheckConstraint(
            "status IN ('scheduled', 'active', 'expired', 'cancelled')",
            name=op.f("ck_price_windows_status_known"),
        ),
        sa.CheckConstraint(
            "effective_until IS NULL OR effective_until > effective_from",
            name=op.f("ck_price_windows_window_ordered"),
        ),
        sa.PrimaryKeyConstraint("change_id", name=op.f("pk_price_windows")),
    )
    op.create_index(
        "ix_price_windows_due",
        "price_windows",
        ["effective_from"],
        unique=False,
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.create_index(
        "ix_price_windows_ending",
        "price_windows",
        ["effective_until"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_table(
        "prices",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("selling_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("discount_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("cost_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("effective_price", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("effective_change_id", sa.UUID(), nullable=True),
        sa.Column("margin_state", sa.String(length=8), server_default=sa.text("'ok'"), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("margin_state IN ('ok', 'below')", name=op.f("ck_prices_margin_state_known")),
        sa.CheckConstraint(
            "selling_price >= 0 AND (discount_price IS NULL OR discount_price <= selling_price)",
            name=op.f("ck_prices_terms_valid"),
        ),
        sa.PrimaryKeyConstraint("sku", "currency", name=op.f("pk_prices")),
    )


def downgrade() -> None:
    op.drop_table("prices")
    op.drop_index(
        "ix_price_windows_ending", table_name="price_windows", postgresql_where=sa.text("status = 'active'")
    )
    op.drop_index(
        "ix_price_windows_due", table_name="price_windows", postgresql_where=sa.text("status = 'scheduled'")
    )
    op.drop_table("price_windows")
    op.drop_index("ix_price_history_sku_time", table_name="price_history")
    op.drop_table("price_history")
    op.drop_index(
        "ix_price_changes_pending", table_name="price_changes", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_table("price_changes")
