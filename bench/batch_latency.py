"""Wall time of the worker's batch transaction (`apply_claiming`) per batch, for small and large batches.

    python -m bench.batch_latency [--sizes 8,500] [--batches 400] [--skus 2000]

Runs in-process against YOUR OWN stack (truncates the stock tables). Commands are decoded up front; only
the transaction (checkout, reads, writes, commit) is timed, as the worker's engine runs it. At small batch
sizes this is mostly round trips on loopback, which is the latency every command of a serial worker pays.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import UTC, datetime

import asyncpg

from bench import load
from bench.stock_throughput import StackProcs, _tree_cpu, _tree_delta
from contracts.stock_commands import STOCK_COMMAND_ADAPTER
from db.engine import make_engine
from workers.pipeline.batch import apply_claiming
from workers.stock_worker.apply import StockSession


async def main_async(args: argparse.Namespace) -> None:
    settings, policy = await load.fresh_stock(args.skus)
    engine = make_engine(settings.database_url, pre_ping=False, generic_plans=True)  # as the workers' engine
    postgres = StackProcs.load(settings).postgres
    stats = await asyncpg.connect(load.asyncpg_dsn(settings.database_url))
    statements = args.statements and bool(
        await stats.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'")
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            batches = max(args.min_batches, args.commands // size)
            generated = load.generate(size * (batches + args.warmup), args.skus, seed=size, bad_per_mille=0)
            commands = [STOCK_COMMAND_ADAPTER.validate_json(v) for _, v in generated.records]
            chunks = [commands[i : i + size] for i in range(0, len(commands), size)]
            walls: list[float] = []
            for i, chunk in enumerate(chunks):
                if i == args.warmup:
                    cpu0, pg0 = time.process_time(), _tree_cpu(postgres)
                    if statements:
                        await stats.execute("SELECT pg_stat_statements_reset()")
                started = time.perf_counter()
                await apply_claiming(engine, lambda: StockSession(policy), chunk, datetime.now(UTC))
                if i >= args.warmup:
                    walls.append(time.perf_counter() - started)
            cpu = time.process_time() - cpu0
            pg = _tree_delta(pg0, _tree_cpu(postgres))
            walls.sort()
            n = len(walls)
            print(
                f"batch {size:>5}: {n} batches  p50 {1e3 * statistics.median(walls):7.2f} ms"
                f"  p90 {1e3 * walls[int(0.9 * n)]:7.2f} ms  mean {1e3 * statistics.fmean(walls):7.2f} ms"
                f"  {1e6 * statistics.fmean(walls) / size:7.1f} us wall/cmd"
                f"  {1e6 * cpu / (size * n):6.1f} us CPU/cmd here"
                f"  PostgreSQL {1e6 * pg / n:7.1f} us CPU/batch, {1e6 * pg / (size * n):6.1f} us/cmd"
            )
            if statements:
                await print_statements(stats, n)
    finally:
        await stats.close()
        await engine.dispose()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


async def print_statements(conn: asyncpg.Connection, batches: int) -> None:
    """pg_stat_statements per batch: calls, plan and execution time (backend wall time, which is CPU
    for cached pages)."""
    rows = await conn.fetch(
        "SELECT calls, total_plan_time, total_exec_time, rows, query FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " ORDER BY total_plan_time + total_exec_time DESC LIMIT 12"
    )
    print(f"    {'calls/batch':>11} {'plan us/batch':>13} {'exec us/batch':>13}  statement")
    for r in rows:
        query = " ".join(r["query"].split())[:90]
        print(
            f"    {r['calls'] / batches:>11.2f} {1e3 * r['total_plan_time'] / batches:>13.1f}"
            f" {1e3 * r['total_exec_time'] / batches:>13.1f}  {query}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="8,500", help="batch sizes, comma separated")
    parser.add_argument("--commands", type=int, default=40_000, help="commands per size (about)")
    parser.add_argument("--min-batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--skus", type=int, default=2000)
    parser.add_argument(
        "--statements",
        action="store_true",
        help="also print pg_stat_statements per batch (resets it; needs the extension loaded)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
