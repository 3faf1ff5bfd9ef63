"""Where a stock worker's batch time goes: decode, rules, each SQL statement, commit; plus a cProfile.

    python -m bench.profile_apply --skus 2000 --batch 2000 --batches 10 [--cprofile 30] [--kafka 100000]

Runs in-process against YOUR OWN stack (truncates the stock tables; --kafka also recreates the stock
command topics). It replays the steps of `workers.pipeline.batch.apply_batch` one by one with the same
functions, timing each with wall clock and this process's CPU: CPU ~ Python work, wall - CPU ~ waiting for
PostgreSQL. Then it runs decode + the real `apply_batch` under cProfile. With --kafka N it also measures
what a plain aiokafka `getmany` drain of N records costs (the consumer's share of the worker's CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from bench import load
from contracts.stock_commands import STOCK_COMMAND_ADAPTER
from contracts.topics import STOCK_COMMANDS
from db import command_log
from db import writes as db_writes
from db.command_log import ProcessedRow
from db.engine import make_engine
from db.writes import present
from workers.intake import decode
from workers.pipeline.batch import Event, apply_batch, first_seen, outbox_row
from workers.rules.alerts import AlertPolicy
from workers.stock_worker.apply import StockSession


@dataclass(frozen=True, slots=True)
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


class GcClock:
    """Time spent in the cyclic garbage collector, by generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.runs[info["generation"]] += 1


class Timer:
    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.order: list[str] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if name not in self.order:
            self.order.append(name)
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - w
            self.cpu[name] += time.process_time() - c


async def staged_batch(engine, policy: AlertPolicy, records: list[FakeRecord], timer: Timer) -> int:  # type: ignore[no-untyped-def]
    """apply_batch, step by step (same functions, same order) with a timer around each step."""
    now = datetime.now(UTC)
    with timer("decode (pydantic validate_json + key check)"):
        decoded = decode(records, STOCK_COMMAND_ADAPTER)
    commands = decoded.valid
    session = StockSession(policy)
    with timer("BEGIN (pool checkout, begin)"):
        ctx = command_log.transaction(engine)
        pg = await ctx.__aenter__()
    try:
        with timer("SQL seen_command_ids"):
            already = await command_log.seen_command_ids(pg, [c.command_id for c in commands])
        fresh, _ = first_seen(commands, already)
        with timer("SQL lock items, reservations, stock (SELECT .. FOR UPDATE) + state"):
            await session.load(pg, fresh)
        processed: list[ProcessedRow] = []
        events: list[Event] = []
        with timer("rules: decide (incl. event models, ledger rows)"):
            for command in fresh:
                verdict = session.decide(command, now)
                events.extend(verdict.events)
                status = "applied" if verdict.rejection is None else "rejected"
                processed.append(
                    ProcessedRow(
                        command.command_id,
                        command.type,
                        command.sku,
                        status,
                        verdict.rejection,
                        now,
                        command.actor,
                        command.issued_at,
                    )
                )
        with timer("save + outbox rows (row building, event.model_dump_json)"):
            writes = [
                *session.save(now),
                *present(
                    command_log.insert_processed(processed),
                    command_log.insert_outbox([outbox_row(e, now) for e in events]),
                ),
            ]
        with timer("SQL all writes, one statement (+ pg_notify)"):
            await db_writes.send(pg, writes)
    except BaseException as error:
        await ctx.__aexit__(type(error), error, error.__traceback__)
        raise
    with timer("COMMIT"):
        await ctx.__aexit__(None, None, None)
    return len(commands)


def records_for(generated: load.Load) -> list[FakeRecord]:
    return [
        FakeRecord(STOCK_COMMANDS.name, 0, i, key, value, tuple(load.HEADERS))
        for i, (key, value) in enumerate(generated.records)
    ]


async def kafka_drain(settings, count: int, skus: int) -> None:  # type: ignore[no-untyped-def]
    from aiokafka import AIOKafkaConsumer

    await load.reset_topics(settings.kafka_bootstrap, settings.kafka_partitions, settings.kafka_replication)
    generated = load.generate(count, skus, seed=7, bad_per_mille=0)
    await load.publish(settings.kafka_bootstrap, STOCK_COMMANDS.name, generated.records)
    consumer = AIOKafkaConsumer(
        STOCK_COMMANDS.name,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-drain-{time.time_ns()}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    got = 0
    w = c = 0.0
    try:
        while got < count:
            w0, c0 = time.perf_counter(), time.process_time()
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            if got:  # skip the join
                w += time.perf_counter() - w0
                c += time.process_time() - c0
            got += sum(len(v) for v in batch.values())
    finally:
        await consumer.stop()
    print(
        f"\naiokafka getmany(max_records=500) drain of {count:,} records:"
        f" {1e6 * c / count:.1f} us CPU/record,"
        f" {count / w:,.0f} records/s wall (no DB, no decode)"
    )


async def main_async(args: argparse.Namespace) -> None:
    settings, policy = await load.fresh_stock(args.skus, args.locations)
    total = args.batch * (args.batches + args.warmup + args.cprofile)
    generated = load.generate(total, args.skus, seed=3, bad_per_mille=1.0, locations=args.locations)
    records = records_for(generated)
    chunks = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    engine = make_engine(settings.database_url, pre_ping=False, generic_plans=True)  # as the workers' engine
    timer = Timer()
    try:
        for chunk in chunks[: args.warmup]:
            await staged_batch(engine, policy, chunk, Timer())
        measured = chunks[args.warmup : args.warmup + args.batches]
        n = 0
        gc_clock = GcClock()
        gc.callbacks.append(gc_clock)
        w0, c0 = time.perf_counter(), time.process_time()
        for chunk in measured:
            n += await staged_batch(engine, policy, chunk, timer)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        gc.callbacks.remove(gc_clock)
        print(
            f"staged apply: {len(measured)} batches of {args.batch} records ({n:,} valid commands),"
            f" {args.skus} SKUs"
        )
        print(
            f"  total {wall:.3f}s wall, {cpu:.3f}s CPU in this process -> {n / wall:,.0f} commands/s"
            f" single-threaded, {1e6 * cpu / n:.1f} us CPU/command here"
        )
        print(f"  {'step':<52} {'wall ms/batch':>13} {'CPU ms/batch':>13} {'us/cmd wall':>11} {'share':>6}")
        for name in timer.order:
            wms = 1e3 * timer.wall[name] / len(measured)
            cms = 1e3 * timer.cpu[name] / len(measured)
            print(
                f"  {name:<52} {wms:>13.2f} {cms:>13.2f} {1e6 * timer.wall[name] / n:>11.1f}"
                f" {100 * timer.wall[name] / wall:>5.1f}%"
            )
        print(
            f"  (inside the steps above) cyclic GC: {1e3 * sum(gc_clock.seconds):.0f} ms in total"
            f" ({100 * sum(gc_clock.seconds) / wall:.1f}% of wall), runs per generation {gc_clock.runs},"
            f" ms per generation {[round(1e3 * x) for x in gc_clock.seconds]}"
        )
        if args.cprofile:
            profiled = chunks[args.warmup + args.batches :]
            profiler = cProfile.Profile()
            profiler.enable()
            for chunk in profiled:
                decoded = decode(chunk, STOCK_COMMAND_ADAPTER)
                await apply_batch(engine, StockSession(policy), decoded.valid, datetime.now(UTC))
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)
            print(f"\ncProfile of decode + real apply_batch over {len(profiled)} batches of {args.batch}:")
            print(out.getvalue())
    finally:
        await engine.dispose()
    if args.kafka:
        await kafka_drain(settings, args.kafka, args.skus)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skus", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--cprofile", type=int, default=0, help="batches to run under cProfile")
    parser.add_argument("--locations", type=int, default=0, help="spread the commands over N locations")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--kafka", type=int, default=0, help="also time a raw aiokafka drain of this many records"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main_async(args))
    except ImportError:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
