"""The floor: what PostgreSQL (and a client doing nothing else) needs to write the rows a stock run wrote.

`bench.stock_throughput --floor` runs it after the batched phase, on the rows that phase left: every
transaction of the real worker is found again by its clock reading (`processed_commands.applied_at`, the
same `now` its ledger and outbox rows carry), and replayed from precomputed arrays, one transaction per
batch of the same size: the items' stock columns and the item_stock rows updated with `UPDATE ... FROM
unnest(...)`, the ledger, processed_commands, outbox and new reservations rows written with COPY (or with
one `INSERT ... SELECT FROM unnest` statement per batch, `--floor-write unnest`). No decoding, no rules, no
Kafka, no look-ups, no locks taken on purpose.

Before the replay the append-only tables (ledger, processed ids, outbox, reservations) are truncated; items
and item_stock keep the real run's rows, which the replay updates with their final values (the widths
are what matter). CPU is measured as for the pipeline: the PostgreSQL tree and this process, psutil/
process_time over the replay only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from db import bulk, writes
from db.command_log import _OUTBOX_TYPES, _PROCESSED_TYPES, OutboxRow, ProcessedRow
from db.stock_repo import _LEDGER_TYPES, LedgerRow, ReservationRow

_APPEND_ONLY = ("stock_ledger", "processed_commands", "outbox", "reservations")
_RESERVATION_TYPES = ("text", "text", "int8", "text", "timestamptz", "uuid", "text")


@dataclass(slots=True)
class FloorBatch:
    """The rows one transaction of the real worker wrote."""

    processed: list[tuple[Any, ...]] = field(default_factory=list)
    ledger: list[tuple[Any, ...]] = field(default_factory=list)
    outbox: list[tuple[Any, ...]] = field(default_factory=list)
    reservations: list[tuple[Any, ...]] = field(default_factory=list)
    items: list[tuple[Any, ...]] = field(default_factory=list)  # sku, on hand, reserved, alert, version
    stock: list[tuple[Any, ...]] = field(default_factory=list)  # sku, location, on hand, reserved, alert


@dataclass(slots=True)
class FloorResult:
    batches: int = 0
    commands: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    write: str = "copy"
    wall_s: float = 0.0
    pg_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    def us_per_command(self, cpu_s: float) -> float:
        return 1e6 * cpu_s / self.commands if self.commands else float("nan")

    @property
    def total_us(self) -> float:
        return self.us_per_command(self.pg_cpu_s + self.client_cpu_s)


def group_batches(
    processed: Sequence[Sequence[Any]],
    ledger: Sequence[Sequence[Any]],
    outbox: Sequence[Sequence[Any]],
    reservations: Sequence[Sequence[Any]],
    items: dict[str, tuple[Any, ...]],
    stock: dict[tuple[str, str], tuple[Any, ...]],
) -> list[FloorBatch]:
    """The real run's rows by transaction, in commit order. `processed` rows are ProcessedRow-shaped
    (applied_at at index 5), ledger rows LedgerRow-shaped (created_at at 8), outbox rows OutboxRow-shaped
    (created_at at 5); a reservation goes with the transaction of the command that made it (its
    command_id); an item and a stock row go with every transaction that moved their stock (ledger)."""
    by_time: dict[datetime, FloorBatch] = {}
    batch_of_command: dict[Any, FloorBatch] = {}
    for row in processed:
        batch = by_time.setdefault(row[5], FloorBatch())
        batch.processed.append(tuple(row))
        batch_of_command[row[0]] = batch
    for row in ledger:
        if (found := by_time.get(row[8])) is not None:
            found.ledger.append(tuple(row))
    for row in outbox:
        if (found := by_time.get(row[5])) is not None:
            found.outbox.append(tuple(row))
    for row in reservations:
        if (found := batch_of_command.get(row[5])) is not None:
            found.reservations.append(tuple(row))
    for batch in by_time.values():
        moved: dict[str, None] = {}
        places: dict[tuple[str, str], None] = {}
        for row in batch.ledger:
            moved[row[1]] = None
            places[(row[1], row[9])] = None
        batch.items = [items[sku] for sku in moved if sku in items]
        batch.stock = [stock[p] for p in places if p in stock]
    return [by_time[t] for t in sorted(by_time)]


async def capture(conn: asyncpg.Connection) -> list[FloorBatch]:
    """The rows of every stock transaction in the tables now (registrations excluded)."""
    processed = await conn.fetch(
        f"SELECT {', '.join(ProcessedRow._fields)} FROM processed_commands"
        " WHERE command_type <> 'register_item'"
    )
    ledger = await conn.fetch(f"SELECT {', '.join(LedgerRow._fields)} FROM stock_ledger")
    outbox = await conn.fetch(
        "SELECT event_id, event_type, channel, sku, payload::text, created_at FROM outbox ORDER BY id"
    )
    reservations = await conn.fetch(f"SELECT {', '.join(ReservationRow._fields)} FROM reservations")
    items = {
        r[0]: tuple(r)
        for r in await conn.fetch(
            "SELECT sku, stock_quantity, reserved_quantity, alert_state, version FROM items"
        )
    }
    stock = {
        (r[0], r[1]): tuple(r)
        for r in await conn.fetch("SELECT sku, location, on_hand, reserved, alert_state FROM item_stock")
    }
    return group_batches(
        [tuple(r) for r in processed],
        [tuple(r) for r in ledger],
        [tuple(r) for r in outbox],
        [tuple(r) for r in reservations],
        items,
        stock,
    )


_UPDATE_ITEMS = (
    "UPDATE items SET stock_quantity = t.q, reserved_quantity = t.r, alert_state = t.a, version = t.v,"
    " updated_at = now() FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::int8[])"
    " AS t(sku, q, r, a, v) WHERE items.sku = t.sku"
)
_UPDATE_STOCK = (
    "UPDATE item_stock SET on_hand = t.q, reserved = t.r, alert_state = t.a, updated_at = now()"
    " FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[]) AS t(sku, location, q, r, a)"
    " WHERE item_stock.sku = t.sku AND item_stock.location = t.location"
)


def _inserts(batch: FloorBatch) -> list[writes.Write]:
    return writes.present(
        bulk.insert("stock_ledger", LedgerRow._fields, _LEDGER_TYPES, batch.ledger),
        bulk.insert("processed_commands", ProcessedRow._fields, _PROCESSED_TYPES, batch.processed),
        bulk.insert("outbox", OutboxRow._fields, _OUTBOX_TYPES, batch.outbox),
        bulk.insert("reservations", ReservationRow._fields, _RESERVATION_TYPES, batch.reservations),
    )


async def write_batch(conn: asyncpg.Connection, batch: FloorBatch, mode: str) -> None:
    async with conn.transaction():
        if batch.items:
            await conn.execute(_UPDATE_ITEMS, *bulk.columns(batch.items, 5))
        if batch.stock:
            await conn.execute(_UPDATE_STOCK, *bulk.columns(batch.stock, 5))
        if mode == "unnest":
            await writes.send(conn, _inserts(batch))
            return
        for table, fields, rows in (
            ("stock_ledger", LedgerRow._fields, batch.ledger),
            ("processed_commands", ProcessedRow._fields, batch.processed),
            ("outbox", OutboxRow._fields, batch.outbox),
            ("reservations", ReservationRow._fields, batch.reservations),
        ):
            if rows:
                await conn.copy_records_to_table(table, records=rows, columns=fields)


async def json_as_text(conn: asyncpg.Connection) -> None:
    """JSON text sent in binary format, as SQLAlchemy's asyncpg dialect does for the worker (COPY is binary:
    a jsonb value is a version byte and the JSON text)."""
    await conn.set_type_codec(
        "json", encoder=str.encode, decoder=bytes.decode, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda s: b"\x01" + s.encode(),
        decoder=lambda b: b[1:].decode(),
        schema="pg_catalog",
        format="binary",
    )


async def run(dsn: str, pg_tree: Callable[[], dict[int, float]], mode: str = "copy") -> FloorResult:
    """Capture the real run's rows, truncate the append-only tables and replay them batch by batch.
    `pg_tree()` reads the CPU seconds of each PostgreSQL process (the server's whole tree, as for the
    pipeline's figure)."""
    conn = await asyncpg.connect(dsn)
    try:
        batches = await capture(conn)
        await conn.execute(f"TRUNCATE {', '.join(_APPEND_ONLY)}")
        if mode == "copy":
            await json_as_text(conn)
        result = FloorResult(write=mode)
        result.batches = len(batches)
        result.commands = sum(len(b.processed) for b in batches)
        for name in ("processed", "ledger", "outbox", "reservations", "items", "stock"):
            result.rows[name] = sum(len(getattr(b, name)) for b in batches)
        pg0 = pg_tree()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for batch in batches:
            await write_batch(conn, batch, mode)
        result.client_cpu_s = time.process_time() - cpu0
        result.wall_s = time.perf_counter() - wall0
        pg1 = pg_tree()
        result.pg_cpu_s = sum(v - pg0.get(pid, 0.0) for pid, v in pg1.items())
        written = await conn.fetchval(
            "SELECT count(*) FROM processed_commands WHERE command_type <> 'register_item'"
        )
        if written != result.commands:
            raise RuntimeError(f"floor: {written} processed_commands rows, expected {result.commands}")
        return result
    finally:
        await conn.close()


def report_lines(floor: FloorResult, pipeline_us: dict[str, float]) -> list[str]:
    """The floor and the pipeline's CPU per command as a multiple of it (`pipeline_us`: process -> us)."""
    total = sum(pipeline_us.values())
    rows = floor.rows
    lines = [
        f"floor ({floor.write}): {floor.commands:,} commands in {floor.batches:,} transactions"
        f" ({floor.commands / max(1, floor.batches):.1f} per transaction), {floor.wall_s:.2f} s;"
        f" rows: ledger {rows['ledger']:,}, processed {rows['processed']:,}, outbox {rows['outbox']:,},"
        f" reservations {rows['reservations']:,}, items updated {rows['items']:,},"
        f" item_stock updated {rows['stock']:,}",
        f"  floor CPU per command (us): PostgreSQL {floor.us_per_command(floor.pg_cpu_s):.1f},"
        f" client {floor.us_per_command(floor.client_cpu_s):.1f}, total {floor.total_us:.1f}",
        "  pipeline CPU per command (us): "
        + ", ".join(f"{name} {us:.1f}" for name, us in pipeline_us.items())
        + f", total {total:.1f} = {total / floor.total_us:.2f} x the floor",
    ]
    return lines
