"""reservations and alert state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 05:37:53.961470+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reservations",
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("reservation_id", sa.String(length=100), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("command_id", sa.UUID(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'released', 'fulfilled', 'expired')",
            name=op.f("ck_reservations_status_known"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_reservations_quantity_positive")),
        sa.PrimaryKeyConstraint("sku", "reservation_id", name=op.f("pk_reservations")),
    )
    op.create_index(
        "ix_reservations_expiry",
        "reservations",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.add_column(
        "items", sa.Column("alert_state", sa.String(length=8), server_default=sa.text("'ok'"), nullable=False)
    )
    op.create_check_constraint(
        op.f("ck_items_alert_state_known"), "items", "alert_state IN ('ok', 'low', 'out', 'over')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_items_alert_state_known"), "items", type_="check")
    op.drop_column("items", "alert_state")
    op.drop_index(
        "ix_reservations_expiry", table_name="reservations", postgresql_where=sa.text("status = 'active'")
    )
    op.drop_table("reservations")
