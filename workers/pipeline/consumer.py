"""The Kafka side of a command worker: translate records into commands, apply them, and only then commit.

Registered once per command topic; the stock and price workers differ only in their `Session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic

import asyncpg
import stamina
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.topics import Topic
from infra.kafka import CONSUMER_SAFETY
from workers.intake import Decoded, Invalid, RawSender, dead_letter, decode
from workers.pipeline.batch import BatchReport, C, Session, apply_claiming

log = structlog.get_logger("invmon.worker")

COMMANDS = Counter("invmon_commands_total", "Commands handled, by worker and outcome.", ["worker", "outcome"])
DEAD_LETTERS = Counter("invmon_dead_letters_total", "Records sent to a dead-letter topic.", ["worker"])
BATCH_SIZE = Histogram(
    "invmon_batch_records",
    "Records per batch.",
    ["worker"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
APPLY_SECONDS = Histogram(
    "invmon_batch_apply_seconds",
    "Time to handle one batch: decode, dead letters, transaction, commit.",
    ["worker"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
# Where a batch's time goes (bench.live_e2e reads these): decode and dead letters, the transaction with its
# retries, and handing the offsets over.
PHASE_SECONDS = Histogram(
    "invmon_batch_phase_seconds",
    "Time of one batch's phases: between (the previous handler's end -> this one's start: fetch and "
    "FastStream), decode (with dead letters), transaction, ack (the offsets handed to the background "
    "committer).",
    ["worker", "phase"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1),
)
OFFSET_COMMIT_FAILURES = Counter(
    "invmon_offset_commit_failures_total",
    "Offset commits that failed after their batch was applied (the batch comes again as duplicates).",
    ["worker"],
)
BATCH_RETRIES = Counter(
    "invmon_batch_retries_total", "Batch transactions retried after an error.", ["worker"]
)


@dataclass(frozen=True, slots=True)
class CommandWorker(Generic[C]):
    """Everything that tells one command worker from another."""

    name: str
    topic: Topic
    dlq: Topic
    adapter: TypeAdapter[C]
    group_id: str
    session: Callable[[], Session[C]]
    max_records: int
    batch_timeout_ms: int
    commit_interval_ms: int = 0


def utcnow() -> datetime:
    return datetime.now(UTC)


class OffsetCommitter:
    """Commits applied batches' offsets in the background, so that the next batch is fetched while the
    broker answers (a worker batch cycle had ~1 ms p50 and up to 10 ms p99 of offset commit in
    bench.live_e2e, and aiokafka fetches nothing more while fetched records wait to be taken).

    Safe because the offsets are explicit: the offset after each partition's last record of a batch, taken
    after that batch's transaction committed, never the consumer's position (which the next fetch moves
    past records not applied yet). One commit at a time: what batches add meanwhile is merged and committed
    next, so commits land in batch order and a slow broker gets one request, not a queue. A commit that
    fails (a rebalance, a broker error) is counted and logged, not retried: the batches come again and
    their command ids are already in processed_commands.

    Commits are at least `interval_s` apart: each is a request the worker writes and the broker handles,
    and one per batch was ~9 % of a worker's CPU at 1,000 commands/s (py-spy, bench.live_e2e). A crash
    redelivers at most that much more, as duplicates."""

    def __init__(self, worker: str, interval_s: float = 0.0) -> None:
        self._worker = worker
        self._interval_s = interval_s
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def commit(self, consumer: AIOKafkaConsumer, records: Sequence[ConsumerRecord[Any, Any]]) -> None:
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            self._pending[tp] = max(self._pending.get(tp, 0), record.offset + 1)
        self._consumer = consumer
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._pending and self._consumer is not None:
            consumer = self._consumer
            assigned = consumer.assignment()
            # A partition revoked meanwhile would fail the whole request; its new owner starts from the
            # last commit that landed and skips what this worker applied since.
            offsets = {tp: offset for tp, offset in self._pending.items() if tp in assigned}
            self._pending = {}
            if not offsets:
                continue
            try:
                await consumer.commit(offsets)
            except Exception as error:  # the batches are applied; a redelivery only yields duplicates
                OFFSET_COMMIT_FAILURES.labels(self._worker).inc()
                log.warning("offset_commit_failed", worker=self._worker, error=repr(error))
            if self._interval_s:
                await asyncio.sleep(self._interval_s)  # spacing commits; what arrives meanwhile is merged

    async def flush(self) -> None:
        """Wait for the commits under way (at shutdown, so that fewer batches come again)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([self._task])


@dataclass(slots=True)
class Runtime:
    """Filled in by the process lifespan; nothing connects at import or registration."""

    engine: AsyncEngine | None = None
    dead_letters: RawSender | None = None
    clock: Callable[[], datetime] = utcnow
    committers: list[OffsetCommitter] = dataclasses.field(default_factory=list)

    def require_engine(self) -> AsyncEngine:
        if self.engine is None:
            raise RuntimeError("worker used before its lifespan started")
        return self.engine

    def require_dead_letters(self) -> RawSender:
        if self.dead_letters is None:
            raise RuntimeError("worker used before its lifespan started")
        return self.dead_letters


# Lost races on a command id (unique violation), deadlocks, serialization failures and dropped connections
# all end the transaction; trying the batch again is the cure. asyncpg's errors arrive unwrapped because the
# batch runs on the driver connection.
RETRYABLE: tuple[type[Exception], ...] = (
    DBAPIError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # the driver's protocol state after a dropped connection (db/command_log.py)
)


def refused_by_database(error: BaseException) -> bool:
    """PostgreSQL refused what a command carries: a data exception (SQLSTATE class 22) or an integrity
    violation (class 23). No attempt cures these, and retrying the batch would stop its partitions. A
    unique violation is left out: it is the lost race on a command id, which the next attempt skips."""
    code = getattr(error, "sqlstate", None)
    return isinstance(code, str) and code[:2] in ("22", "23") and code != "23505"


def _retryable(error: Exception) -> bool:
    return isinstance(error, RETRYABLE) and not refused_by_database(error)


async def raw_batch(message: Any) -> Any:
    # Keep the bytes: each record is validated on its own, so one bad record cannot fail the batch.
    # async on purpose: FastStream runs a plain-def decoder in a worker thread, a thread hop per batch
    # that was ~15 % of a worker's CPU at small batches.
    return message.body


def _text_headers(record: ConsumerRecord[Any, Any]) -> ConsumerRecord[Any, Any]:
    headers = [(k, v.decode("utf-8", "replace").encode()) for k, v in record.headers]
    return dataclasses.replace(record, headers=headers)


async def tolerant_batch_parser(records: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's batch parser decodes every header value as UTF-8; one binary header would fail the
    whole batch before our handler runs, with nobody left to rewind it. Parse a copy with readable headers
    instead, and keep the original records so dead letters carry the original bytes."""
    try:
        return await original(records)
    except UnicodeDecodeError:
        message = await original(tuple(_text_headers(r) for r in records))
        message.raw_message = records
        return message


async def apply_with_retry(
    worker: CommandWorker[C], runtime: Runtime, commands: Sequence[C]
) -> BatchReport[C]:
    """Transient database errors (and a lost race on a command id) are retried with back-off; when the
    attempts run out the error propagates and the batch is rewound, never committed."""
    async for attempt in stamina.retry_context(on=_retryable, attempts=8, wait_initial=0.05, wait_max=5.0):
        with attempt:
            if attempt.num > 1:
                BATCH_RETRIES.labels(worker.name).inc()
            return await apply_claiming(runtime.require_engine(), worker.session, commands, runtime.clock())
    raise RuntimeError("retry loop ended without a result")


async def apply_one_by_one(
    worker: CommandWorker[C], runtime: Runtime, decoded: Decoded[C]
) -> tuple[BatchReport[C], list[Invalid]]:
    """A batch PostgreSQL refused, again with one transaction per command in partition order: the commands
    it refuses come back with the reason, to be dead-lettered; the others are applied."""
    report: BatchReport[C] = BatchReport()
    refused: list[Invalid] = []
    for command, record in zip(decoded.valid, decoded.sources, strict=True):
        try:
            one = await apply_with_retry(worker, runtime, [command])
        except Exception as error:
            if not refused_by_database(error):
                raise
            sqlstate = getattr(error, "sqlstate", "")
            refused.append(Invalid(record, f"refused by PostgreSQL ({sqlstate}): {error}"))
            continue
        report.add(one)
    return report, refused


async def apply_or_split(
    worker: CommandWorker[C], runtime: Runtime, decoded: Decoded[C]
) -> tuple[BatchReport[C], list[Invalid]]:
    """The batch in one transaction, retried while that may help; if PostgreSQL refuses what a command
    carries, the batch one command at a time instead. The refused commands come back, to be
    dead-lettered."""
    try:
        return await apply_with_retry(worker, runtime, decoded.valid), []
    except Exception as error:
        if not refused_by_database(error):
            raise
        log.warning("batch_refused_splitting", worker=worker.name, error=repr(error))
    return await apply_one_by_one(worker, runtime, decoded)


def _log_outcomes(worker: str, report: BatchReport[Any], invalid: Sequence[Invalid]) -> None:
    for bad in invalid:
        r = bad.record
        log.warning(
            "dead_lettered",
            worker=worker,
            reason=bad.reason,
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
        )
    for command, reason in report.rejected:
        log.info(
            "command_rejected",
            worker=worker,
            command_id=str(command.command_id),
            sku=command.sku,
            reason=reason,
        )
    for command in report.duplicates:
        log.info("duplicate_command", worker=worker, command_id=str(command.command_id), sku=command.sku)


def current_message(broker: KafkaBroker) -> KafkaMessage:
    """The message being handled. Not a `message: KafkaMessage` handler parameter: FastStream resolves that
    with a plain function, which fast_depends runs in a worker thread, a thread hop for every batch."""
    message: KafkaMessage = broker.context.get_local("message")
    return message


def batch_subscriber(
    broker: KafkaBroker,
    topic: str,
    *,
    group_id: str,
    max_records: int,
    batch_timeout_ms: int,
    title: str,
    description: str,
) -> BatchSubscriber:
    """A batch subscriber with the settings `require_safe` checks (manual ack, earliest reset) and the
    tolerant parser, so that one bad record never fails the batch: the one place that declares them."""
    return broker.subscriber(
        topic,
        batch=True,
        group_id=group_id,
        ack_policy=CONSUMER_SAFETY.ack_policy,
        auto_offset_reset=CONSUMER_SAFETY.auto_offset_reset,
        max_records=max_records,
        batch_timeout_ms=batch_timeout_ms,
        decoder=raw_batch,
        parser=tolerant_batch_parser,
        title=title,
        description=description,
    )


def register(broker: KafkaBroker, worker: CommandWorker[C], runtime: Runtime) -> None:
    committer = OffsetCommitter(worker.name, worker.commit_interval_ms / 1000)
    finished = [0.0]  # when the previous batch's handler ended (perf_counter)
    runtime.committers.append(committer)

    @batch_subscriber(
        broker,
        worker.topic.name,
        group_id=worker.group_id,
        max_records=worker.max_records,
        batch_timeout_ms=worker.batch_timeout_ms,
        title=worker.name,
        description=f"Applies {worker.topic.description} exactly once to PostgreSQL.",
    )
    async def on_commands(body: list[bytes]) -> None:
        message = current_message(broker)
        raw = message.raw_message
        # A real consumer hands a tuple of records; TestKafkaBroker hands a list.
        records = tuple(raw) if isinstance(raw, tuple | list) else (raw,)
        started = time.perf_counter()
        if finished[0]:
            PHASE_SECONDS.labels(worker.name, "between").observe(started - finished[0])
        try:
            decoded = decode(records, worker.adapter)
            if decoded.invalid:
                await dead_letter(runtime.require_dead_letters(), worker.dlq.name, decoded.invalid)
            decoded_at = time.perf_counter()
            report, refused = await apply_or_split(worker, runtime, decoded)
            if refused:
                await dead_letter(runtime.require_dead_letters(), worker.dlq.name, refused)
        except BaseException:
            # Rewind every partition of the batch so nothing is committed past an unapplied record.
            await message.nack()
            raise
        applied_at = time.perf_counter()
        if isinstance(message.consumer, AIOKafkaConsumer):
            committer.commit(message.consumer, records)
        else:
            await message.ack()  # TestKafkaBroker's stand-in consumer takes no offsets
        PHASE_SECONDS.labels(worker.name, "decode").observe(decoded_at - started)
        PHASE_SECONDS.labels(worker.name, "transaction").observe(applied_at - decoded_at)
        PHASE_SECONDS.labels(worker.name, "ack").observe(time.perf_counter() - applied_at)
        finished[0] = time.perf_counter()
        BATCH_SIZE.labels(worker.name).observe(len(records))
        APPLY_SECONDS.labels(worker.name).observe(time.perf_counter() - started)
        invalid = [*decoded.invalid, *refused]
        DEAD_LETTERS.labels(worker.name).inc(len(invalid))
        for outcome, count in (
            ("applied", report.applied),
            ("rejected", report.rejected),
            ("duplicate", report.duplicates),
        ):
            COMMANDS.labels(worker.name, outcome).inc(len(count))
        _log_outcomes(worker.name, report, invalid)
