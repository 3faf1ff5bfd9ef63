"""time partitions for the growing tables (retention by partition drop)

Each table becomes a RANGE-partitioned parent and the old table becomes its first partition, `<table>_legacy`
(MINVALUE up to the moment of the upgrade), without copying a row: a CHECK constraint proves its range, so
ATTACH skips the scan. The unique keys gain the partition key (PostgreSQL requires it). A DEFAULT
partition takes what no range covers until partition maintenance (db/partitions.py) creates the ranges:
`invmon db upgrade` runs one round right after migrating.

processed_commands and notification_deliveries gain their partition key column (issued_at, event_at):
rows already there get a constant far in the past (no table rewrite), so they stay in the legacy partition.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 19:30:00.000000+00:00
"""

from __future__ import annotations

from typing import NamedTuple

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

LEGACY_KEY = "2000-01-01 00:00:00+00"


# A NamedTuple, not a dataclass: Alembic loads this file outside sys.modules, where dataclasses fail.
class Spec(NamedTuple):
    table: str
    key: str
    old_constraints: tuple[str, ...]  # PK/unique/FK of the old table, rebuilt on the parent
    old_indexes: tuple[str, ...]
    new: tuple[str, ...]  # DDL on the parent; {t} is the table
    new_key_column: bool = False
    sequence: str | None = None


SPECS = (
    Spec(
        "outbox",
        "created_at",
        ("pk_outbox", "uq_outbox_event_id"),
        ("ix_outbox_unpublished",),
        (
            "ALTER TABLE {t} ADD CONSTRAINT pk_outbox PRIMARY KEY (id, created_at)",
            "ALTER TABLE {t} ADD CONSTRAINT uq_outbox_event_id UNIQUE (event_id, created_at)",
            "CREATE INDEX ix_outbox_unpublished ON {t} (id) WHERE published_at IS NULL",
        ),
        sequence="outbox_id_seq",
    ),
    Spec(
        "processed_commands",
        "issued_at",
        ("pk_processed_commands",),
        (),
        (
            "ALTER TABLE {t} ADD CONSTRAINT pk_processed_commands PRIMARY KEY (command_id, issued_at)",
            "CREATE INDEX ix_processed_commands_applied_at ON {t} USING brin (applied_at)",
        ),
        new_key_column=True,
    ),
    Spec(
        "notification_attempts",
        "attempted_at",
        ("pk_notification_attempts", "fk_notification_attempts_delivery_id_notification_deliveries"),
        ("ix_notification_attempts_delivery",),
        (
            "ALTER TABLE {t} ADD CONSTRAINT pk_notification_attempts PRIMARY KEY (id, attempted_at)",
            "CREATE INDEX ix_notification_attempts_delivery ON {t} (delivery_id, id)",
        ),
        sequence="notification_attempts_id_seq",
    ),
    Spec(
        "notification_deliveries",
        "event_at",
        (
            "pk_notification_deliveries",
            "uq_notification_deliveries_event_sub",
            "fk_notification_deliveries_subscription_id_notification_9770",
        ),
        ("ix_notification_deliveries_due", "ix_notification_deliveries_sub_created"),
        (
            "ALTER TABLE {t} ADD CONSTRAINT pk_notification_deliveries PRIMARY KEY (id, event_at)",
            "ALTER TABLE {t} ADD CONSTRAINT uq_notification_deliveries_event_sub"
            " UNIQUE (event_id, subscription_id, event_at)",
            "ALTER TABLE {t} ADD CONSTRAINT fk_notification_deliveries_subscription_id_notification_9770"
            " FOREIGN KEY (subscription_id) REFERENCES notification_subscriptions (id) ON DELETE CASCADE",
            "CREATE INDEX ix_notification_deliveries_due ON {t} (next_attempt_at) WHERE status = 'pending'",
            "CREATE INDEX ix_notification_deliveries_sub_created ON {t} (subscription_id, created_at)",
        ),
        new_key_column=True,
        sequence="notification_deliveries_id_seq",
    ),
    Spec(
        "stock_ledger",
        "created_at",
        ("pk_stock_ledger",),
        ("ix_stock_ledger_sku_id",),
        (
            "ALTER TABLE {t} ADD CONSTRAINT pk_stock_ledger PRIMARY KEY (id, created_at)",
            "CREATE INDEX ix_stock_ledger_sku_id ON {t} (sku, id)",
        ),
        sequence="stock_ledger_id_seq",
    ),
    Spec(
        "price_history",
        "created_at",
        ("pk_price_history",),
        ("ix_price_history_sku_time",),
        (
            "ALTER TABLE {t} ADD CONSTRAINT pk_price_history PRIMARY KEY (id, created_at)",
            "CREATE INDEX ix_price_history_sku_time ON {t} (sku, currency, created_at, id)",
        ),
        sequence="price_history_id_seq",
    ),
)


def _partition(spec: Spec, cut: str) -> None:
    t, legacy = spec.table, f"{spec.table}_legacy"
    op.execute(f"LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE")
    if spec.new_key_column:
        # A constant default is stored once in the catalog: no rewrite of the rows already there.
        op.execute(f"ALTER TABLE {t} ADD COLUMN {spec.key} timestamptz NOT NULL DEFAULT '{LEGACY_KEY}'")
    for name in spec.old_constraints:
        op.execute(f"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {name}")
    for name in spec.old_indexes:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute(f"ALTER TABLE {t} RENAME TO {legacy}")
    if spec.sequence:
        # Owned by the legacy partition the sequence would go with it when that partition is dropped.
        op.execute(f"ALTER SEQUENCE {spec.sequence} OWNED BY NONE")
    op.execute(
        f"CREATE TABLE {t} (LIKE {legacy} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        f" PARTITION BY RANGE ({spec.key})"
    )
    if spec.new_key_column:
        # Writers give the key (the command's issued_at, the event's time); now() serves direct inserts.
        op.execute(f"ALTER TABLE ONLY {t} ALTER COLUMN {spec.key} SET DEFAULT now()")
    if spec.sequence:
        op.execute(f"ALTER SEQUENCE {spec.sequence} OWNED BY {t}.id")
    for ddl in spec.new:
        op.execute(ddl.format(t=t))
    # Proves the legacy range, so ATTACH needs no scan of its own.
    op.execute(f"ALTER TABLE {legacy} ADD CONSTRAINT {legacy}_range CHECK ({spec.key} < '{cut}')")
    op.execute(f"ALTER TABLE {t} ATTACH PARTITION {legacy} FOR VALUES FROM (MINVALUE) TO ('{cut}')")
    op.execute(f"ALTER TABLE {legacy} DROP CONSTRAINT {legacy}_range")
    op.execute(f"CREATE TABLE {t}_default PARTITION OF {t} DEFAULT")


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    cut = op.get_bind().exec_driver_sql("SELECT now()::text").scalar_one()
    for spec in SPECS:
        _partition(spec, cut)


def _unpartition(spec: Spec) -> None:
    """Back to one plain table: the rows of every partition are copied into it."""
    t, plain = spec.table, f"{spec.table}_plain"
    op.execute(f"CREATE TABLE {plain} (LIKE {t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    op.execute(f"INSERT INTO {plain} SELECT * FROM {t}")
    if spec.sequence:
        op.execute(f"ALTER SEQUENCE {spec.sequence} OWNED BY NONE")
    op.execute(f"DROP TABLE {t} CASCADE")
    op.execute(f"ALTER TABLE {plain} RENAME TO {t}")
    if spec.sequence:
        op.execute(f"ALTER SEQUENCE {spec.sequence} OWNED BY {t}.id")
    if spec.new_key_column:
        op.execute(f"ALTER TABLE {t} DROP COLUMN {spec.key}")


OLD_KEYS = {
    "outbox": (
        "ALTER TABLE outbox ADD CONSTRAINT pk_outbox PRIMARY KEY (id)",
        "ALTER TABLE outbox ADD CONSTRAINT uq_outbox_event_id UNIQUE (event_id)",
        "CREATE INDEX ix_outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
    ),
    "processed_commands": (
        "ALTER TABLE processed_commands ADD CONSTRAINT pk_processed_commands PRIMARY KEY (command_id)",
    ),
    "notification_deliveries": (
        "ALTER TABLE notification_deliveries ADD CONSTRAINT pk_notification_deliveries PRIMARY KEY (id)",
        "ALTER TABLE notification_deliveries ADD CONSTRAINT uq_notification_deliveries_event_sub"
        " UNIQUE (event_id, subscription_id)",
        "ALTER TABLE notification_deliveries ADD CONSTRAINT"
        " fk_notification_deliveries_subscription_id_notification_9770 FOREIGN KEY (subscription_id)"
        " REFERENCES notification_subscriptions (id) ON DELETE CASCADE",
        "CREATE INDEX ix_notification_deliveries_due ON notification_deliveries (next_attempt_at)"
        " WHERE status = 'pending'",
        "CREATE INDEX ix_notification_deliveries_sub_created ON notification_deliveries"
        " (subscription_id, created_at)",
    ),
    "notification_attempts": (
        "ALTER TABLE notification_attempts ADD CONSTRAINT pk_notification_attempts PRIMARY KEY (id)",
        "CREATE INDEX ix_notification_attempts_delivery ON notification_attempts (delivery_id, id)",
        "ALTER TABLE notification_attempts ADD CONSTRAINT"
        " fk_notification_attempts_delivery_id_notification_deliveries FOREIGN KEY (delivery_id)"
        " REFERENCES notification_deliveries (id) ON DELETE CASCADE NOT VALID",
    ),
    "stock_ledger": (
        "ALTER TABLE stock_ledger ADD CONSTRAINT pk_stock_ledger PRIMARY KEY (id)",
        "CREATE INDEX ix_stock_ledger_sku_id ON stock_ledger (sku, id)",
    ),
    "price_history": (
        "ALTER TABLE price_history ADD CONSTRAINT pk_price_history PRIMARY KEY (id)",
        "CREATE INDEX ix_price_history_sku_time ON price_history (sku, currency, created_at, id)",
    ),
}


def downgrade() -> None:
    # A duplicate id across partitions (a command re-sent after the window) makes this fail, on purpose.
    op.execute("SET LOCAL lock_timeout = '5s'")
    for spec in SPECS:
        _unpartition(spec)
    for table in OLD_KEYS:  # deliveries' key before the attempts' foreign key to it
        for ddl in OLD_KEYS[table]:
            op.execute(ddl)
