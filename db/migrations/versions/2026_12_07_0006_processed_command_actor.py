"""processed_commands.actor: who sent each command, so only its sender (or an admin) reads its outcome

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 17:00:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and without a default: a catalogue-only change, no table rewrite. Rows from before have no
    # actor; their outcome is shown to admins only.
    op.add_column("processed_commands", sa.Column("actor", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("processed_commands", "actor")
