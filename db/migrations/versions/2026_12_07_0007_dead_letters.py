"""dead letters: what a command worker dead-lettered, so a command's status can say so

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 17:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("command_id", sa.UUID(), nullable=True),
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("by_reference", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        # A batch that comes again (an outage, a rebalance) dead-letters the same record again.
        sa.UniqueConstraint("topic", "partition", "offset", name=op.f("uq_dead_letters_origin")),
    )
    op.create_index(
        "ix_dead_letters_command_id",
        "dead_letters",
        ["command_id"],
        postgresql_where=sa.text("command_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_command_id", table_name="dead_letters")
    op.drop_table("dead_letters")
