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

from bench import load
from contracts.stock_commands import STOCK_COMMAND_ADAPTER
from db.engine import make_engine
from workers.pipeline.batch import apply_claiming
from workers.stock_worker.apply import StockSession


async def main_async(args: argparse.Namespace) -> None:
    settings, policy = await load.fresh_stock(args.skus)
    engine = make_engine(settings.database_url, pre_ping=False)  # as the workers' engine
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            batches = max(args.min_batches, args.commands // size)
            generated = load.generate(size * (batches + args.warmup), args.skus, seed=size, bad_per_mille=0)
            commands = [STOCK_COMMAND_ADAPTER.validate_json(v) for _, v in generated.records]
            chunks = [commands[i : i + size] for i in range(0, len(commands), size)]
            walls: list[float] = []
            cpu0 = time.process_time()
            for i, chunk in enumerate(chunks):
                started = time.perf_counter()
                await apply_claiming(engine, lambda: StockSession(policy), chunk, datetime.now(UTC))
                if i >= args.warmup:
                    walls.append(time.perf_counter() - started)
            cpu = time.process_time() - cpu0
            walls.sort()
            n = len(walls)
            print(
                f"batch {size:>5}: {n} batches  p50 {1e3 * statistics.median(walls):7.2f} ms"
                f"  p90 {1e3 * walls[int(0.9 * n)]:7.2f} ms  mean {1e3 * statistics.fmean(walls):7.2f} ms"
                f"  {1e6 * statistics.fmean(walls) / size:7.1f} us wall/cmd"
                f"  {1e6 * cpu / (size * len(chunks)):6.1f} us CPU/cmd here"
            )
    finally:
        await engine.dispose()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="8,500", help="batch sizes, comma separated")
    parser.add_argument("--commands", type=int, default=40_000, help="commands per size (about)")
    parser.add_argument("--min-batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--skus", type=int, default=2000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
