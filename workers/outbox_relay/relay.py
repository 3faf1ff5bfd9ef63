"""Publish outbox rows in id order, then mark them sent. At least once; event ids let receivers dedupe."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import asyncpg
import orjson
import structlog
from prometheus_client import Counter, Gauge, Histogram

from contracts.topics import EVENTS, EVENTS_DLQ
from db import outbox_repo
from db.outbox_repo import PendingEvent
from infra.live_redis import LiveRedis
from infra.logging import hot_path_lines
from workers.outbox_relay.refusals import (
    KAFKA_REFUSALS,
    PRODUCER_STUCK,
    BrokerRefused,
    Refusal,
    dead_letter,
    oversize,
    reason_of,
    redis_refused,
)

log = structlog.get_logger("invmon.outbox_relay")
_TRACE = logging.getLogger("invmon.outbox_relay")

PUBLISHED = Counter("invmon_outbox_published_total", "Outbox events published.", ["channel"])
LEADER = Gauge("invmon_outbox_relay_leader", "1 while this process is the publishing relay.")
DELAY = Histogram(
    "invmon_outbox_delay_seconds",
    "Time from outbox write to publication.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)
# Where a round's time goes (bench.live_e2e reads these): a millisecond matters at a 10 ms target.
ROUND_SECONDS = Histogram(
    "invmon_outbox_round_seconds",
    "Time of one relay round's phases: NOTIFY -> round start, read the rows, Redis publish, "
    "Kafka enqueue -> every ack, mark published.",
    ["phase"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1),
)
ROUND_ROWS = Histogram(
    "invmon_outbox_round_rows",
    "Outbox rows published per round.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 250, 500, 1000),
)

# How long published rows may wait for the next round's read to mark them (one round trip instead of
# two); no NOTIFY by then: marked on their own. Only a crash in between republishes them (at least once).
MARK_LINGER_S = 0.025

REFUSED = Counter(
    "invmon_outbox_refused_total",
    "Outbox events a destination refused for good (kafka: dead-lettered by reference; redis: not live).",
    ["destination"],
)

# (payload, topic, key, headers) -> a future that resolves when the broker acknowledged the record.
KafkaSend = Callable[[bytes, str, bytes, dict[str, str]], Awaitable["asyncio.Future[Any]"]]


class Producer(Protocol):
    """The relay's Kafka side (workers/outbox_relay/main.py)."""

    async def send(self, body: bytes, topic: str, key: bytes, headers: dict[str, str]) -> asyncio.Future[Any]:
        """Enqueue; the future resolves when the broker acknowledged the record."""

    async def max_record_bytes(self) -> int:
        """The largest record the event topic takes: its max.message.bytes and the producer's request size."""

    async def reset(self) -> None:
        """Replace the producer with a new one (a new producer id)."""


async def _to_redis(
    live: LiveRedis, channel: str, events: Sequence[PendingEvent], history: int
) -> list[Refusal]:
    """One script call for the channel; if Redis refuses it, each event alone, in order, to find the one it
    refuses (those before it may be published twice: Redis numbers the repeat anew, as after any retry)."""
    try:
        await live.publish(channel, [(e.sku, e.event_type, e.payload) for e in events], history=history)
        return []
    except Exception as error:
        if not redis_refused(error):
            raise
        if len(events) == 1:
            return [Refusal(events[0], "redis", reason_of(error))]
    refused: list[Refusal] = []
    for event in events:
        refused += await _to_redis(live, channel, [event], history)
    return refused


def _headers(event: PendingEvent) -> dict[str, str]:
    return {"event-type": event.event_type, "event-id": event.event_id, "content-type": "application/json"}


def _record(event: PendingEvent) -> tuple[bytes, bytes, dict[str, str]]:
    return event.payload.encode(), event.sku.encode(), _headers(event)


async def _to_kafka(
    events: Sequence[PendingEvent], send: KafkaSend, max_bytes: int, known: Mapping[int, str]
) -> list[Refusal]:
    """Enqueued in order, acks awaited together. `known`: rows the broker refused in an earlier round."""
    acks: list[tuple[PendingEvent, asyncio.Future[Any]]] = []
    refused: list[Refusal] = []
    for event in events:
        body, key, headers = _record(event)
        reason = known.get(event.id) or oversize(body, key, headers, max_bytes)
        if reason is not None:
            refused.append(Refusal(event, "kafka", reason))
            continue
        try:
            acks.append((event, await send(body, EVENTS.name, key, headers)))
        except KAFKA_REFUSALS as error:  # the producer's own check (max_request_size)
            refused.append(Refusal(event, "kafka", reason_of(error)))
    results = await asyncio.gather(*(ack for _, ack in acks), return_exceptions=True)
    by_broker = {
        event.id: f"{reason_of(result)} (refused by the broker)"
        for (event, _), result in zip(acks, results, strict=True)
        if isinstance(result, KAFKA_REFUSALS)
    }
    if by_broker:
        # The limit changed under us (the pre-check passed). Those rows are refused from the next round on,
        # by a new producer: this one's sequence numbers now have a gap.
        raise BrokerRefused(by_broker)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return refused


async def publish(
    events: Sequence[PendingEvent],
    send: KafkaSend,
    live: LiveRedis,
    *,
    history: int,
    max_bytes: int,
    known: Mapping[int, str],
) -> list[Refusal]:
    """Redis first (one script call per live channel numbers the channel's events, keeps them in its
    bounded history and publishes them), then Kafka (enqueued in order, acks awaited together). The caller
    marks the rows only after both, so each is still at least once: a failure of either publishes the rows
    again to both, and Redis gives the repeats new offsets (docs/live-protocol.md). Waiting for the Kafka
    acks before Redis put a Kafka round trip (~4 ms of a ~12 ms p50, bench.live_e2e) on the way to the
    WebSocket; publishing Redis while the acks were awaited still paid for the enqueueing and the producer's
    work on the same loop (Redis call p50 ~1.0-1.25 ms against ~0.55-0.75 ms first).

    Returns what a destination refused for good; an outage raises instead."""
    started = time.perf_counter()
    by_channel: dict[str, list[PendingEvent]] = {}
    for event in events:
        by_channel.setdefault(event.channel, []).append(event)
    refused: list[Refusal] = []
    for channel, group in by_channel.items():
        refused += await _to_redis(live, channel, group, history)
    published = time.perf_counter()
    refused += await _to_kafka(events, send, max_bytes, known)
    ROUND_SECONDS.labels("redis").observe(published - started)
    ROUND_SECONDS.labels("kafka").observe(time.perf_counter() - published)
    return refused


def _log_published(events: Iterable[PendingEvent]) -> None:
    if not _TRACE.isEnabledFor(logging.INFO):
        # hot_path_lines would make (and drop) a structlog call per event: ~10 % of the relay's CPU at
        # 1,000 commands/s with INVMON_LOG_LEVEL=WARNING (py-spy, bench.live_e2e).
        return
    # The command id is in the payload only; parsing it (~1 us) is cheaper than a column the worker writes.
    hot_path_lines(
        "invmon.outbox_relay",
        "event_published",
        (
            {
                "event_id": event.event_id,
                "command_id": orjson.loads(event.payload).get("command_id"),
                "sku": event.sku,
                "event_type": event.event_type,
            }
            for event in events
        ),
    )


async def settle(refused: Sequence[Refusal], send: KafkaSend) -> dict[int, str]:
    """Dead-letter what Kafka refused (by reference, acks awaited: a DLQ that is down is an outage), log and
    count every refusal; returns outbox id -> reason, to be marked failed."""
    reasons: dict[int, list[str]] = {}
    acks = []
    for r in refused:
        REFUSED.labels(r.destination).inc()
        log.error(
            "outbox_event_refused",
            destination=r.destination,
            reason=r.reason,
            outbox_id=r.event.id,
            event_id=r.event.event_id,
            event_type=r.event.event_type,
            sku=r.event.sku,
            size=len(r.event.payload),
        )
        reasons.setdefault(r.event.id, []).append(f"{r.destination}: {r.reason}")
        if r.destination == "kafka":
            headers = {"x-dlq-reason": r.reason, **_headers(r.event)}
            acks.append(
                await send(dead_letter(r.event, r.reason), EVENTS_DLQ.name, r.event.sku.encode(), headers)
            )
    await asyncio.gather(*acks)
    return {outbox_id: "; ".join(parts) for outbox_id, parts in reasons.items()}


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        producer: Producer,
        live: LiveRedis,
        *,
        batch_size: int,
        poll_interval_s: float,
        history: int,
    ) -> None:
        self._dsn = dsn
        self._producer = producer
        self._send: KafkaSend = producer.send
        self._live = live
        self._max_bytes = 0  # read at the start of each session: the topic's limit may have changed
        self._known: dict[int, str] = {}  # outbox id -> why the broker refused it in an earlier round
        self._history = history
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._notified_at = 0.0  # when the first NOTIFY since the last round arrived (0: none)
        self._published_at = 0.0  # when the last round's acks were in (monotonic)

    async def run(self) -> None:
        """Run until cancelled. Reconnects after a lost database connection."""
        while True:
            try:
                await self._session()
            except Exception as error:  # Kafka, Redis or PostgreSQL failed; nothing was marked sent
                LEADER.set(0)
                log.warning("outbox_relay_restart", error=repr(error))
                if isinstance(error, BrokerRefused):
                    self._known.update(error.refusals)
                if isinstance(error, (BrokerRefused, *PRODUCER_STUCK)):
                    await self._reset_producer()
                await asyncio.sleep(1.0)

    async def _reset_producer(self) -> None:
        try:
            await self._producer.reset()
            log.warning("outbox_relay_producer_replaced")
        except Exception as error:  # Kafka is down too: the next session tries again
            log.warning("outbox_relay_producer_reset_failed", error=repr(error))

    async def _session(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        unmarked: list[int] = []  # published, not yet marked
        try:
            while not await outbox_repo.try_lead(conn):  # noqa: ASYNC110  # the lock is another process's
                await asyncio.sleep(1.0)
            self._max_bytes = await self._producer.max_record_bytes()
            LEADER.set(1)
            log.info("outbox_relay_leading", max_record_bytes=self._max_bytes)
            await outbox_repo.listen(conn, self._notified)
            while True:
                if self._notified_at:
                    # NOTIFY callback -> round start: how long the loop took to get back to us.
                    ROUND_SECONDS.labels("wake").observe(time.perf_counter() - self._notified_at)
                    self._notified_at = 0.0
                self._wake.clear()
                unmarked = await self._round(conn, unmarked)
                # The next round's read marks these rows too when it follows soon: more rows than a round
                # takes, or a NOTIFY within MARK_LINGER_S (at a steady rate, the next transaction's).
                if len(unmarked) == self._batch_size or (unmarked and await self._wait(MARK_LINGER_S)):
                    continue
                if unmarked:
                    marking = time.perf_counter()
                    await outbox_repo.mark_published(conn, unmarked, self._published_s_ago())
                    ROUND_SECONDS.labels("mark").observe(time.perf_counter() - marking)
                    unmarked = []
                await self._wait(self._poll_interval_s)
        finally:
            LEADER.set(0)
            if unmarked:
                # Stopped (or failed) while rows waited for the next read: mark them if the connection still
                # can, rather than publish them again at the next start.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        outbox_repo.mark_published(conn, unmarked, self._published_s_ago()), 1.0
                    )
            await conn.close()

    async def _round(self, conn: asyncpg.Connection, unmarked: list[int]) -> list[int]:
        """Mark `unmarked` (published by the round before), read and publish the next rows; returns the
        ids published, not yet marked (the caller marks them, or hands them to the next round)."""
        started = time.perf_counter()
        events = await outbox_repo.pending(conn, self._batch_size, unmarked, self._published_s_ago())
        ROUND_SECONDS.labels("read").observe(time.perf_counter() - started)
        if events:
            ROUND_ROWS.observe(len(events))
            refused = await publish(
                events,
                self._send,
                self._live,
                history=self._history,
                max_bytes=self._max_bytes,
                known=self._known,
            )
            if refused:
                await outbox_repo.mark_refused(conn, await settle(refused, self._send))
                for r in refused:
                    self._known.pop(r.event.id, None)
            self._published_at = time.monotonic()
            refused_ids = {r.event.id for r in refused}
            for event in events:
                PUBLISHED.labels(event.channel).inc()
                DELAY.observe(max(event.age_s, 0.0))
            _log_published(e for e in events if e.id not in refused_ids)
        return [e.id for e in events]

    def _published_s_ago(self) -> float:
        return max(time.monotonic() - self._published_at, 0.0)

    def _notified(self, *_: object) -> None:
        if not self._notified_at:
            self._notified_at = time.perf_counter()
        self._wake.set()

    async def _wait(self, timeout_s: float) -> bool:
        """Until a NOTIFY (True; at once if one came during the round) or `timeout_s` (False)."""
        if self._wake.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        return self._wake.is_set()
