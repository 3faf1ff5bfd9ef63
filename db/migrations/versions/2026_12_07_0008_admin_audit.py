"""admin audit trail (append-only)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 16:50:00+00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The app only ever INSERTs; this makes that a property of the table rather than of the code.
REFUSE_CHANGES = (
    """
    CREATE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'admin_audit is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE TRIGGER admin_audit_append_only BEFORE UPDATE OR DELETE ON admin_audit
        FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only()
    """,
    """
    CREATE TRIGGER admin_audit_no_truncate BEFORE TRUNCATE ON admin_audit
        FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_append_only()
    """,
)


def upgrade() -> None:
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("client", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_audit")),
    )
    op.create_index("ix_admin_audit_at_id", "admin_audit", ["at", "id"], unique=False)
    op.create_index("ix_admin_audit_actor_at", "admin_audit", ["actor", "at"], unique=False)
    op.create_index("ix_admin_audit_action_at", "admin_audit", ["action", "at"], unique=False)
    for statement in REFUSE_CHANGES:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER admin_audit_no_truncate ON admin_audit")
    op.execute("DROP TRIGGER admin_audit_append_only ON admin_audit")
    op.execute("DROP FUNCTION admin_audit_append_only()")
    op.drop_index("ix_admin_audit_action_at", table_name="admin_audit")
    op.drop_index("ix_admin_audit_actor_at", table_name="admin_audit")
    op.drop_index("ix_admin_audit_at_id", table_name="admin_audit")
    op.drop_table("admin_audit")
