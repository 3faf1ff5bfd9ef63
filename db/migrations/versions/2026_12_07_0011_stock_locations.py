"""stock locations: locations, stock per (SKU, location), and the location of reservations and ledger rows

Every item's current stock moves into one row at the 'default' location (its on-hand, reserved and alert
state), so the totals on items stay equal to the sums over item_stock. The ledger's new column has a
constant default: stored once in the catalog, no row of the partitioned table is rewritten, and every old
row reads as 'default'.

The downgrade refuses while any stock (on hand or reserved) sits outside 'default': dropping the rows would
lose where those units are. Otherwise the totals on items already hold everything and the tables go.

item_stock is created with room on its pages (fillfactor 70): nearly every stock command updates one of its
rows, and an UPDATE that finds no room on the row's page cannot be HOT, so it writes a new entry into both
indexes. Packed full (as rows are inserted), a row's update cost PostgreSQL about 11 us against 3.6 us with
the room (bench: 450-row batch UPDATE, backend CPU per row).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 22:00:00.000000+00:00
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# contracts.common.LOCATION_PATTERN; a migration does not import the code it migrates for.
CODE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"

UPGRADE = (
    f"""
    CREATE TABLE locations (
        code text NOT NULL,
        name text NOT NULL,
        kind text NOT NULL,
        is_active boolean NOT NULL DEFAULT true,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pk_locations PRIMARY KEY (code),
        CONSTRAINT ck_locations_code_pattern CHECK (code ~ '{CODE_PATTERN}'),
        CONSTRAINT ck_locations_kind_known CHECK (kind IN ('warehouse', 'store', 'virtual')),
        CONSTRAINT ck_locations_default_active CHECK (code <> 'default' OR is_active)
    )
    """,
    "INSERT INTO locations (code, name, kind) VALUES ('default', 'Default location', 'warehouse')",
    """
    CREATE TABLE item_stock (
        sku varchar(64) NOT NULL,
        location text NOT NULL,
        on_hand bigint NOT NULL,
        reserved bigint NOT NULL,
        min_stock_level bigint,
        max_stock_level bigint,
        alert_state varchar(8) NOT NULL DEFAULT 'ok',
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT pk_item_stock PRIMARY KEY (sku, location),
        CONSTRAINT fk_item_stock_sku_items FOREIGN KEY (sku) REFERENCES items (sku) ON DELETE CASCADE,
        CONSTRAINT fk_item_stock_location_locations FOREIGN KEY (location) REFERENCES locations (code),
        CONSTRAINT ck_item_stock_available_not_negative CHECK (reserved >= 0 AND on_hand >= reserved),
        CONSTRAINT ck_item_stock_levels_not_negative
            CHECK ((min_stock_level IS NULL OR min_stock_level >= 0)
                   AND (max_stock_level IS NULL OR max_stock_level >= 0)),
        CONSTRAINT ck_item_stock_alert_state_known CHECK (alert_state IN ('ok', 'low', 'out', 'over'))
    ) WITH (fillfactor = 70)
    """,
    """
    INSERT INTO item_stock (sku, location, on_hand, reserved, alert_state)
    SELECT sku, 'default', stock_quantity, reserved_quantity, alert_state FROM items
    """,
    "CREATE INDEX ix_item_stock_location_sku ON item_stock (location, sku)",
    # Every reservation so far was made at the one place there was.
    "ALTER TABLE reservations ADD COLUMN location text NOT NULL DEFAULT 'default'"
    " CONSTRAINT fk_reservations_location_locations REFERENCES locations (code)",
    "ALTER TABLE stock_ledger ADD COLUMN location text NOT NULL DEFAULT 'default'",
    "ALTER TABLE notification_subscriptions ADD COLUMN locations text[] NOT NULL DEFAULT '{}'",
)


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    for ddl in UPGRADE:
        op.execute(ddl)


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    # Stock commands write item_stock: hold it still between the check and the drop.
    op.execute("LOCK TABLE item_stock IN SHARE MODE")
    outside = (
        op.get_bind()
        .exec_driver_sql(
            "SELECT count(*), coalesce(sum(on_hand), 0), coalesce(sum(reserved), 0) FROM item_stock"
            " WHERE location <> 'default' AND (on_hand <> 0 OR reserved <> 0)"
        )
        .one()
    )
    if outside[0]:
        raise RuntimeError(
            f"refusing to downgrade below 0011: {outside[0]} (SKU, location) rows outside 'default' still"
            f" hold stock ({outside[1]} on hand, {outside[2]} reserved); transfer it to 'default' first"
        )
    op.execute("ALTER TABLE notification_subscriptions DROP COLUMN locations")
    op.execute("ALTER TABLE stock_ledger DROP COLUMN location")
    op.execute("ALTER TABLE reservations DROP COLUMN location")
    op.execute("DROP TABLE item_stock")
    op.execute("DROP TABLE locations")
