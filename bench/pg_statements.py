"""PostgreSQL's share of a stock batch, statement by statement, and what cheaper variants would cost.

    python -m bench.pg_statements [--rows 2000] [--rounds 20]

Works only in a scratch schema `bench_scratch` of YOUR OWN stack's database (dropped at the end): copies of
the outbox / ledger / processed_commands / items tables with the same columns and indexes, filled with the
rows a real batch writes. For each statement it reports the PostgreSQL backend's CPU (psutil on the
backend pid) per row, which is what a 2-core box pays on the database side.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import psutil

from bench import load, stacks
from bench.floor import json_as_text
from contracts.common import DEFAULT_LOCATION
from contracts.stock_commands import STOCK_COMMAND_ADAPTER
from db import bulk, writes
from db.stock_repo import _ITEM_TYPES, ItemRow
from infra.settings import get_settings
from workers.pipeline.batch import Event, outbox_row
from workers.rules.alerts import AlertPolicy
from workers.rules.stock import ItemState, LocationStock
from workers.stock_worker.apply import StockSession, row_from_state

SCHEMA = "bench_scratch"

SETUP = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.outbox_jsonb (LIKE public.outbox INCLUDING ALL);
CREATE TABLE {SCHEMA}.outbox_json (LIKE public.outbox INCLUDING ALL);
ALTER TABLE {SCHEMA}.outbox_json ALTER COLUMN payload TYPE json;
CREATE TABLE {SCHEMA}.outbox_text (LIKE public.outbox INCLUDING ALL);
ALTER TABLE {SCHEMA}.outbox_text ALTER COLUMN payload TYPE text;
CREATE TABLE {SCHEMA}.outbox_jsonb_noidx (LIKE public.outbox INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
CREATE TABLE {SCHEMA}.stock_ledger (LIKE public.stock_ledger INCLUDING ALL);
CREATE TABLE {SCHEMA}.processed_commands (LIKE public.processed_commands INCLUDING ALL);
CREATE TABLE {SCHEMA}.items (LIKE public.items INCLUDING ALL);
"""


async def backend_cpu(conn: asyncpg.Connection, action: Awaitable[object]) -> tuple[float, float]:
    """(backend CPU seconds, wall seconds) of `action`."""
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    proc = psutil.Process(pid)
    before = proc.cpu_times()
    started = time.perf_counter()
    await action
    wall = time.perf_counter() - started
    after = proc.cpu_times()
    return (after.user + after.system) - (before.user + before.system), wall


async def main_async(args: argparse.Namespace) -> None:
    settings = get_settings()
    if stacks.default_stack(settings.stack_dir):
        raise SystemExit("set INVMON_STACK_DIR to your own stack")
    now = datetime.now(UTC)
    n = args.rows
    # Realistic rows: decide a generated batch with the real rules.
    generated = load.generate(n * args.rounds, 2000, seed=11, bad_per_mille=0)
    commands = [STOCK_COMMAND_ADAPTER.validate_json(v) for _, v in generated.records]
    session = StockSession(AlertPolicy(settings.alert_clear_margin_pct))
    session.items = {
        load.sku_name(i): ItemState(
            sku=load.sku_name(i),
            name=f"Bench item {i}",
            on_hand=100,
            min_stock_level=10,
            stock={DEFAULT_LOCATION: LocationStock(100)},
        )
        for i in range(2000)
    }
    events: list[Event] = []
    processed: list[tuple[object, ...]] = []
    for command in commands:
        verdict = session.decide(command, now)
        events.extend(verdict.events)
        processed.append((command.command_id, command.type, command.sku, "applied", None, now))
    outbox = [outbox_row(e, now) for e in events]
    ledger = session.ledger
    items = [row_from_state(s) for s in session.items.values()]
    per = len(events) / len(commands)
    conn = await asyncpg.connect(load.asyncpg_dsn(settings.database_url))
    results: list[tuple[str, float, float, int]] = []
    try:
        await conn.execute(SETUP)
        await json_as_text(conn)

        async def measure(label: str, rows: int, make: Callable[[int], Awaitable[object]]) -> None:
            # All rounds under one reading: the kernel's CPU accounting ticks are 10 ms.
            async def rounds() -> None:
                for r in range(args.rounds):
                    await make(r)

            cpu, wall = await backend_cpu(conn, rounds())
            results.append((label, cpu, wall, rows * args.rounds))

        def chunk(rows: list, r: int, size: int) -> list:  # type: ignore[type-arg]
            return rows[r * size : (r + 1) * size]

        ob = int(n * per)

        def copy_outbox(table: str, r: int) -> Awaitable[str]:
            return conn.copy_records_to_table(
                table, schema_name=SCHEMA, records=chunk(outbox, r, ob), columns=fields
            )

        fields = ("event_id", "event_type", "channel", "sku", "payload", "created_at")
        for table in ("outbox_jsonb", "outbox_json", "outbox_text", "outbox_jsonb_noidx"):
            await measure(
                {
                    "outbox_jsonb": "COPY outbox (payload jsonb, as now)",
                    "outbox_json": "COPY outbox, payload json",
                    "outbox_text": "COPY outbox, payload text",
                    "outbox_jsonb_noidx": "COPY outbox jsonb, no indexes (index share)",
                }[table],
                ob,
                functools.partial(copy_outbox, table),
            )
        await measure(
            "COPY stock_ledger",
            n,
            lambda r: conn.copy_records_to_table(
                "stock_ledger", schema_name=SCHEMA, records=chunk(ledger, r, n), columns=ledger[0]._fields
            ),
        )
        await measure(
            "COPY processed_commands",
            n,
            lambda r: conn.copy_records_to_table(
                "processed_commands",
                schema_name=SCHEMA,
                records=chunk(processed, r, n),
                columns=("command_id", "command_type", "sku", "status", "reason", "applied_at"),
            ),
        )

        # Items: insert once, then the upsert the worker runs vs a narrow UPDATE of the stock columns.
        def upsert_items(rows: list[ItemRow]) -> Awaitable[None]:
            upsert = bulk.upsert(f"{SCHEMA}.items", ItemRow._fields, _ITEM_TYPES, ("sku",), rows)
            return writes.send(conn, writes.present(upsert))

        await upsert_items(items)

        k = min(len(items), int(n * 0.8))  # distinct SKUs in a batch of n over 2000 SKUs is about this
        await measure(
            "items upsert: INSERT..ON CONFLICT DO UPDATE all cols (in a CTE)",
            k,
            lambda r: upsert_items(items[:k]),
        )
        narrow = (
            f"UPDATE {SCHEMA}.items AS i SET stock_quantity = t.q, reserved_quantity = t.r,"
            " alert_state = t.a, version = t.v, updated_at = now()"
            " FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::int8[]) AS t(sku, q, r, a, v)"
            " WHERE i.sku = t.sku"
        )
        await measure(
            "items: UPDATE .. FROM unnest (stock columns only)",
            k,
            lambda r: conn.execute(
                narrow,
                [x.sku for x in items[:k]],
                [x.stock_quantity for x in items[:k]],
                [x.reserved_quantity for x in items[:k]],
                [x.alert_state for x in items[:k]],
                [x.version + r for x in items[:k]],
            ),
        )
        await measure(
            "seen_command_ids (= ANY uuid[]) on the filled table",
            n,
            lambda r: conn.fetch(
                f"SELECT command_id FROM {SCHEMA}.processed_commands WHERE command_id = ANY($1::uuid[])",
                [uuid.uuid4() for _ in range(n)],
            ),
        )
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()
    print(
        f"PostgreSQL backend CPU per row ({args.rounds} rounds of {n} commands;"
        f" {per:.2f} outbox events per command)"
    )
    print(f"  {'statement':<55} {'us CPU/row':>10} {'us wall/row':>11} {'us CPU/command':>14}")
    for label, cpu, wall, rows in results:
        per_cmd = 1e6 * cpu / (n * args.rounds)
        print(f"  {label:<55} {1e6 * cpu / rows:>10.1f} {1e6 * wall / rows:>11.1f} {per_cmd:>14.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2000, help="commands per batch")
    parser.add_argument("--rounds", type=int, default=40)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
