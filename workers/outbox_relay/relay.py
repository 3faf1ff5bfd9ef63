"""Publish outbox rows in id order, then mark them sent. At least once; event ids let receivers dedupe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import structlog
from prometheus_client import Counter, Gauge, Histogram

from contracts.topics import EVENTS
from db import outbox_repo
from db.outbox_repo import PendingEvent
from infra.live_redis import LiveRedis

log = structlog.get_logger("invmon.outbox_relay")

PUBLISHED = Counter("invmon_outbox_published_total", "Outbox events published.", ["channel"])
BACKLOG = Gauge("invmon_outbox_backlog", "Outbox events not yet published.")
LEADER = Gauge("invmon_outbox_relay_leader", "1 while this process is the publishing relay.")
DELAY = Histogram(
    "invmon_outbox_delay_seconds",
    "Time from outbox write to publication.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
)

# (payload, topic, key, headers) -> a future that resolves when the broker acknowledged the record.
KafkaSend = Callable[[bytes, str, bytes, dict[str, str]], Awaitable["asyncio.Future[Any]"]]


async def publish(events: Sequence[PendingEvent], send: KafkaSend, live: LiveRedis, *, history: int) -> None:
    """Kafka first (enqueued in order, acks awaited together), then Redis: one script call per live
    channel numbers the channel's events, keeps them in its bounded history and publishes them."""
    acks = []
    for event in events:
        body = event.payload.encode()
        headers = {
            "event-type": event.event_type,
            "event-id": event.event_id,
            "content-type": "application/json",
        }
        acks.append(await send(body, EVENTS.name, event.sku.encode(), headers))
    await asyncio.gather(*acks)
    by_channel: dict[str, list[tuple[str, str, str]]] = {}
    for event in events:
        by_channel.setdefault(event.channel, []).append((event.sku, event.event_type, event.payload))
    for channel, entries in by_channel.items():
        await live.publish(channel, entries, history=history)


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        send: KafkaSend,
        live: LiveRedis,
        *,
        batch_size: int,
        poll_interval_s: float,
        history: int,
    ) -> None:
        self._dsn = dsn
        self._send = send
        self._live = live
        self._history = history
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()

    async def run(self) -> None:
        """Run until cancelled. Reconnects after a lost database connection."""
        while True:
            try:
                await self._session()
            except Exception as error:  # Kafka, Redis or PostgreSQL failed; nothing was marked sent
                LEADER.set(0)
                log.warning("outbox_relay_restart", error=repr(error))
                await asyncio.sleep(1.0)

    async def _session(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            while not await outbox_repo.try_lead(conn):  # noqa: ASYNC110  # the lock is another process's
                await asyncio.sleep(1.0)
            LEADER.set(1)
            log.info("outbox_relay_leading")
            await outbox_repo.listen(conn, lambda *_: self._wake.set())
            while True:
                self._wake.clear()
                published = await self._round(conn)
                if published < self._batch_size:
                    await self._wait()
        finally:
            LEADER.set(0)
            await conn.close()

    async def _round(self, conn: asyncpg.Connection) -> int:
        events = await outbox_repo.pending(conn, self._batch_size)
        if events:
            await publish(events, self._send, self._live, history=self._history)
            await outbox_repo.mark_published(conn, [e.id for e in events])
            for event in events:
                PUBLISHED.labels(event.channel).inc()
                DELAY.observe(max(event.age_s, 0.0))
        BACKLOG.set(await outbox_repo.backlog(conn) if len(events) == self._batch_size else 0)
        return len(events)

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
