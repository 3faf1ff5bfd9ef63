"""The outbox relay marks a round's rows in the next round's read (one round trip instead of two) when the
next NOTIFY comes soon; otherwise on their own. Published rows are never left unmarked by a clean stop, and
published_at is when they were published, not when they were marked."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from db import outbox_repo
from db.outbox_repo import asyncpg_dsn
from infra.live_redis import LiveRedis
from infra.settings import Settings
from tests.integration.helpers import wait_until
from tests.integration.test_outbox_relay_failover import rows, write
from workers.outbox_relay import relay as relay_module
from workers.outbox_relay.relay import OutboxRelay

pytestmark = [pytest.mark.stack, pytest.mark.timeout(60)]


class Producer:
    """Kafka acknowledging at once: the test is about the outbox side."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, body: bytes, topic: str, key: bytes, headers: dict[str, str]) -> asyncio.Future[Any]:
        self.sent.append(headers["event-id"])
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def seen(self) -> set[str]:
        return set(self.sent)

    async def max_record_bytes(self) -> int:
        return 1 << 20

    async def reset(self) -> None:
        return None


async def unmarked(db: asyncpg.Connection, sku: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM outbox WHERE sku = $1 AND published_at IS NULL", sku))


def sku() -> str:
    return f"ROUND-{uuid.uuid4().hex[:8].upper()}"


async def test_a_read_marks_the_rows_it_is_given_and_leaves_them_out(
    stack: Settings, db: asyncpg.Connection
) -> None:
    one = sku()
    await write(stack, rows(one, 3))
    first = [e for e in await outbox_repo.pending(db, 10_000) if e.sku == one]
    assert len(first) == 3
    second = await outbox_repo.pending(db, 10_000, [e.id for e in first])
    assert not [e for e in second if e.sku == one]
    assert await unmarked(db, one) == 0


async def test_rows_wait_for_the_next_read_and_a_stop_marks_them(
    stack: Settings, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long linger: the first batch stays unmarked until the second batch's NOTIFY, whose round's read
    # marks it; the second then stays unmarked until the relay stops.
    monkeypatch.setattr(relay_module, "MARK_LINGER_S", 30.0)
    redis = Redis.from_url(stack.redis_url)
    producer = Producer()
    relay = OutboxRelay(
        asyncpg_dsn(stack.database_url),
        producer,
        LiveRedis(redis),
        batch_size=500,
        poll_interval_s=60.0,
        history=100,
    )
    task = asyncio.create_task(relay.run())
    a, b = sku(), sku()
    try:
        first, second = rows(a, 3), rows(b, 2)
        await write(stack, first)
        ids = {str(r.event_id) for r in first}
        await wait_until(producer.seen, lambda sent: ids <= sent, within=20, what="the first batch sent")
        assert await unmarked(db, a) == 3  # lingering for the next round
        await write(stack, second)
        await wait_until(lambda: unmarked(db, a), lambda n: n == 0, within=10, what="marked by the next read")
        ids = {str(r.event_id) for r in second}
        await wait_until(producer.seen, lambda sent: ids <= sent, within=20, what="the second batch sent")
        assert await unmarked(db, b) == 2
        seen_at = await db.fetchval("SELECT clock_timestamp()")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await redis.aclose()
    assert await unmarked(db, b) == 0
    # Marked at the stop, but stamped with the time they were published (before the test saw them sent).
    latest = await db.fetchval("SELECT max(published_at) FROM outbox WHERE sku = $1", b)
    assert latest < seen_at
