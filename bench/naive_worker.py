"""The baseline for bench.stock_throughput: an honest one-transaction-per-message stock worker.

For each record, in order: decode it with the same contract adapter and key check (`workers.intake.decode`),
dead-letter it if invalid (awaiting the ack), otherwise apply it with the same `apply_batch` + `StockSession`
on a one-element list (one PostgreSQL transaction: idempotency claim, state, ledger, outbox), then commit that
record's offset and take the next. Same exactly-once and commit-after-DB guarantees, no batching.

    python -m bench.naive_worker --group bench-naive-<id> --stats /tmp/naive.json

Runs until SIGTERM/SIGINT, then writes its per-message timings to --stats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from contracts.stock_commands import STOCK_COMMAND_ADAPTER
from contracts.topics import STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from db.engine import make_engine
from infra.settings import get_settings
from workers.intake import dead_letter, decode
from workers.pipeline.batch import apply_batch
from workers.rules.alerts import AlertPolicy
from workers.stock_worker.apply import StockSession


async def run(group: str, stats_path: Path | None) -> None:
    settings = get_settings()
    policy = AlertPolicy(settings.alert_clear_margin_pct)
    engine = make_engine(settings.database_url)
    consumer = AIOKafkaConsumer(
        STOCK_COMMANDS.name,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    apply_s: list[float] = []
    message_s: list[float] = []
    counts = {"applied": 0, "rejected": 0, "duplicate": 0, "dead_letter": 0}
    await producer.start()
    await consumer.start()

    async def consume() -> None:
        while True:
            record = await consumer.getone()
            started = time.perf_counter()
            decoded = decode([record], STOCK_COMMAND_ADAPTER)
            if decoded.invalid:
                await dead_letter(producer, STOCK_COMMANDS_DLQ.name, decoded.invalid)
                counts["dead_letter"] += 1
            else:
                t0 = time.perf_counter()
                report = await apply_batch(engine, StockSession(policy), decoded.valid, datetime.now(UTC))
                apply_s.append(time.perf_counter() - t0)
                counts["applied"] += len(report.applied)
                counts["rejected"] += len(report.rejected)
                counts["duplicate"] += len(report.duplicates)
            tp = TopicPartition(record.topic, record.partition)
            await consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "")})
            message_s.append(time.perf_counter() - started)

    task = asyncio.create_task(consume())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await consumer.stop()
    await producer.stop()
    await engine.dispose()
    if stats_path is not None:
        _write(stats_path, {"counts": counts, "apply_s": apply_s, "message_s": message_s})


def _write(path: Path, stats: dict[str, object]) -> None:
    path.write_text(json.dumps(stats))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--group", required=True, help="consumer group (use a fresh one per run)")
    parser.add_argument("--stats", type=Path, help="write per-message timings here on exit")
    args = parser.parse_args()
    try:
        import uvloop  # the real worker runs on uvloop too (uvicorn's loop="auto")

        uvloop.run(run(args.group, args.stats))
    except ImportError:
        asyncio.run(run(args.group, args.stats))


if __name__ == "__main__":
    main()
