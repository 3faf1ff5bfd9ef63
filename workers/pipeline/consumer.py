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

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from prometheus_client import Counter, Histogram
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.topics import Topic
from db import dead_letter_repo
from db.dead_letter_repo import DeadLetterRow
from infra.kafka import CONSUMER_SAFETY
from infra.logging import hot_path_lines
from workers.intake import REASON_CHARS, Invalid, RawSender, Record, dead_letter, decode
from workers.pipeline.batch import BatchReport, C, Session, apply_claiming
from workers.pipeline.faults import with_rule_fault
from workers.pipeline.gate import PartitionGate
from workers.pipeline.isolation import apply_isolating
from workers.pipeline.linger import LingerPolicy, grow
from workers.pipeline.routing import PartitionCheck

log = structlog.get_logger("invmon.worker")

COMMANDS = Counter("invmon_commands_total", "Commands handled, by worker and outcome.", ["worker", "outcome"])
DEAD_LETTERS = Counter(
    "invmon_dead_letters_total",
    "Records sent to a dead-letter topic, by worker and reason category (db.dead_letter_repo.CATEGORIES).",
    ["worker", "reason"],
)
BY_REFERENCE = Counter(
    "invmon_dead_letters_by_reference_total",
    "Records too large for the dead-letter topic, sent there by reference (origin, size, sha256).",
    ["worker"],
)
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
    "FastStream), linger (waiting for more records, workers.pipeline.linger), decode (with dead letters), "
    "transaction, ack (the offsets handed to the background committer).",
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
    linger_ms: int = 0
    linger_records: int = 0


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


async def send_dead_letters(worker: CommandWorker[Any], runtime: Runtime, invalid: Sequence[Invalid]) -> None:
    """To the DLQ (in full or by reference), then a row each in dead_letters for the command status."""
    if not invalid:
        return
    sent = await dead_letter(runtime.require_dead_letters(), worker.dlq.name, invalid)
    now = runtime.clock()
    rows = [
        DeadLetterRow(
            command_id,
            s.invalid.record.topic,
            s.invalid.record.partition,
            s.invalid.record.offset,
            s.invalid.reason[:REASON_CHARS],
            now,
            s.by_reference,
            actor,
        )
        for s in sent
        for command_id, actor in [s.identity()]
    ]
    await dead_letter_repo.record(runtime.require_engine(), rows)
    for s in sent:
        DEAD_LETTERS.labels(worker.name, dead_letter_repo.category(s.invalid.reason)).inc()
    BY_REFERENCE.labels(worker.name).inc(sum(s.by_reference for s in sent))


def first_offsets(records: Sequence[Record]) -> dict[TopicPartition, int]:
    firsts: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        firsts[tp] = min(firsts.get(tp, record.offset), record.offset)
    return firsts


def resolved(
    records: Sequence[ConsumerRecord[Any, Any]], waiting: dict[TopicPartition, int]
) -> list[ConsumerRecord[Any, Any]]:
    """The records before each waiting partition's first unresolved one: the only offsets safe to commit."""
    if not waiting:
        return list(records)
    return [r for r in records if r.offset < waiting.get(TopicPartition(r.topic, r.partition), r.offset + 1)]


def _log_outcomes(worker: str, report: BatchReport[Any], invalid: Sequence[Invalid]) -> None:
    # One line per recorded event ties the command to its events (`invmon logs --command-id` follows the
    # event ids on to the outbox relay and the notifier); the cheap writer, one write per batch: it is one
    # line per command.
    hot_path_lines(
        "invmon.worker",
        "event_recorded",
        (
            {
                "worker": worker,
                "command_id": event.command_id,
                "sku": event.sku,
                "event_id": event.event_id,
                "event_type": event.type,
            }
            for event in report.events
        ),
    )
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
    gate = PartitionGate(worker.name)
    partition_check = PartitionCheck(worker.name)
    new_session = with_rule_fault(worker.session)
    finished = [0.0]  # when the previous batch's handler ended (perf_counter)
    linger = LingerPolicy(worker.linger_ms / 1000, worker.linger_records)
    runtime.committers.append(committer)

    async def apply(commands: Sequence[C]) -> BatchReport[C]:
        return await apply_claiming(runtime.require_engine(), new_session, commands, runtime.clock())

    def retried() -> None:
        BATCH_RETRIES.labels(worker.name).inc()

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
        # A real consumer hands a tuple of records; TestKafkaBroker hands a list (and takes no offsets).
        records = tuple(raw) if isinstance(raw, tuple | list) else (raw,)
        consumer = message.consumer if isinstance(message.consumer, AIOKafkaConsumer) else None
        started = time.perf_counter()
        if finished[0]:
            PHASE_SECONDS.labels(worker.name, "between").observe(started - finished[0])
        waiting: dict[TopicPartition, int] = {}
        try:
            if consumer is not None and worker.linger_ms:
                records = await grow(consumer, linger, records, worker.max_records, started)
                # A rewind (message.nack at shutdown) must cover the records taken while lingering too.
                message.raw_message = records
                lingered_at = time.perf_counter()
                PHASE_SECONDS.labels(worker.name, "linger").observe(lingered_at - started)
                started = lingered_at
            decoded = decode(records, worker.adapter)
            if consumer is not None:
                partitions = consumer.partitions_for_topic(worker.topic.name)
                partition_check.check(decoded.valid, decoded.sources, len(partitions or ()))
            await send_dead_letters(worker, runtime, decoded.invalid)
            decoded_at = time.perf_counter()
            outcome = await apply_isolating(apply, decoded, retried)
            await send_dead_letters(worker, runtime, outcome.failed)
            if outcome.unresolved:
                if consumer is None:
                    raise outcome.wait_cause or RuntimeError("waiting")
                waiting = first_offsets(outcome.unresolved)
                log.warning("batch_waiting", worker=worker.name, error=repr(outcome.wait_cause))
        except Exception as error:
            if consumer is None:
                await message.nack()
                raise
            # Dead letters that could not be sent or recorded, or an error no one foresaw: the whole batch
            # waits with back-off rather than being re-read at once for ever.
            log.warning("batch_waiting", worker=worker.name, error=repr(error))
            gate.hold(consumer, first_offsets(records))
            return
        except BaseException:
            # Cancelled (shutdown): rewind every partition of the batch; nothing is committed past it.
            await message.nack()
            raise
        applied_at = time.perf_counter()
        if consumer is not None:
            done = resolved(records, waiting)
            if done:
                committer.commit(consumer, done)
                gate.moved(done)
            if waiting:
                gate.hold(consumer, waiting)
        else:
            await message.ack()
        report = outcome.report
        PHASE_SECONDS.labels(worker.name, "decode").observe(decoded_at - started)
        PHASE_SECONDS.labels(worker.name, "transaction").observe(applied_at - decoded_at)
        PHASE_SECONDS.labels(worker.name, "ack").observe(time.perf_counter() - applied_at)
        finished[0] = time.perf_counter()
        BATCH_SIZE.labels(worker.name).observe(len(records))
        APPLY_SECONDS.labels(worker.name).observe(time.perf_counter() - started)
        for outcome_name, count in (
            ("applied", report.applied),
            ("rejected", report.rejected),
            ("duplicate", report.duplicates),
        ):
            COMMANDS.labels(worker.name, outcome_name).inc(len(count))
        _log_outcomes(worker.name, report, [*decoded.invalid, *outcome.failed])
