"""The Kafka subscriber: translate records into commands, apply them, and only then commit offsets."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stamina
import structlog
from faststream.kafka import KafkaBroker, KafkaMessage
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.stock_commands import STOCK_COMMAND_ADAPTER, StockCommand
from contracts.topics import STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from infra.kafka import CONSUMER_SAFETY
from infra.settings import Settings
from workers.intake import dead_letter, decode
from workers.rules.alerts import AlertPolicy
from workers.stock_worker import metrics
from workers.stock_worker.apply import BatchReport, apply_batch

log = structlog.get_logger("invmon.stock_worker")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Deps:
    """What the handler needs; filled in by the process lifespan (nothing connects at import)."""

    engine: AsyncEngine | None = None
    policy: AlertPolicy = field(default_factory=AlertPolicy)
    clock: Callable[[], datetime] = field(default=_utcnow)

    def require_engine(self) -> AsyncEngine:
        if self.engine is None:
            raise RuntimeError("stock worker used before its lifespan started")
        return self.engine


def _raw_batch(message: Any) -> Any:
    # Keep the bytes: each record is validated on its own, so one bad record cannot fail the batch.
    return message.body


async def _apply_with_retry(deps: Deps, commands: Sequence[StockCommand]) -> BatchReport:
    """Transient database errors (and a lost race on a command id) are retried with back-off; when the
    attempts run out the error propagates and the batch is rewound, never committed."""
    async for attempt in stamina.retry_context(
        on=(DBAPIError, OSError), attempts=8, wait_initial=0.05, wait_max=5.0
    ):
        with attempt:
            if attempt.num > 1:
                metrics.BATCH_RETRIES.inc()
            return await apply_batch(deps.require_engine(), commands, deps.clock(), deps.policy)
    raise RuntimeError("retry loop ended without a result")


def register(broker: KafkaBroker, settings: Settings, deps: Deps) -> None:
    @broker.subscriber(
        STOCK_COMMANDS.name,
        batch=True,
        group_id=settings.stock_consumer_group,
        ack_policy=CONSUMER_SAFETY.ack_policy,
        auto_offset_reset="earliest",
        max_records=settings.worker_max_records,
        batch_timeout_ms=settings.worker_batch_timeout_ms,
        decoder=_raw_batch,
        title="stock-worker",
        description="Applies stock commands exactly once to PostgreSQL.",
    )
    async def on_stock_commands(body: list[bytes], message: KafkaMessage) -> None:
        raw = message.raw_message
        # A real consumer hands a tuple of records; TestKafkaBroker hands a list.
        records = tuple(raw) if isinstance(raw, tuple | list) else (raw,)
        started = time.perf_counter()
        try:
            decoded = decode(records, STOCK_COMMAND_ADAPTER)
            if decoded.invalid:
                await dead_letter(broker, STOCK_COMMANDS_DLQ.name, decoded.invalid)
                metrics.DEAD_LETTERS.inc(len(decoded.invalid))
                for bad in decoded.invalid:
                    log.warning(
                        "dead_lettered",
                        reason=bad.reason,
                        topic=bad.record.topic,
                        partition=bad.record.partition,
                        offset=bad.record.offset,
                    )
            report = await _apply_with_retry(deps, decoded.valid)
        except BaseException:
            # Rewind every partition of the batch so nothing is committed past an unapplied record.
            await message.nack()
            raise
        await message.ack()
        metrics.BATCH_SIZE.observe(len(records))
        metrics.APPLY_SECONDS.observe(time.perf_counter() - started)
        metrics.COMMANDS.labels("applied").inc(len(report.applied))
        metrics.COMMANDS.labels("rejected").inc(len(report.rejected))
        metrics.COMMANDS.labels("duplicate").inc(len(report.duplicates))
        for command, reason in report.rejected:
            log.info("command_rejected", command_id=str(command.command_id), sku=command.sku, reason=reason)
        for command in report.duplicates:
            log.info("duplicate_command", command_id=str(command.command_id), sku=command.sku)
