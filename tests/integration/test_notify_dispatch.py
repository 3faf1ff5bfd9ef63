"""The notifier's database side against the real PostgreSQL: redelivered events create each delivery
once, concurrent dispatchers never claim the same delivery, and an endpoint failing for longer than the
threshold is disabled with an email to the admin (a real SMTP server); its later deliveries are not sent."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from aiokafka import ConsumerRecord

from db import command_log, notify_repo
from db.engine import make_engine
from infra.settings import Settings
from tests.e2e.notify_support import serving, smtp_server
from tests.integration.helpers import pg_dsn
from workers.notifier import consumer
from workers.notifier.dispatcher import Dispatcher

pytestmark = [pytest.mark.stack, pytest.mark.timeout(60)]


def record(event: dict[str, object], offset: int) -> ConsumerRecord[bytes, bytes]:
    value = json.dumps(event).encode()
    return ConsumerRecord(
        "invmon.events.v1", 0, offset, 0, 0, str(event["sku"]).encode(), value, None, 0, len(value), []
    )


async def add_subscription(db: asyncpg.Connection, sku: str, url: str, **extra: object) -> uuid.UUID:
    sub_id = uuid.uuid4()
    await db.execute(
        """
        INSERT INTO notification_subscriptions (id, name, skus, kind, url, secret, failing_since)
        VALUES ($1, 'it', $2, 'webhook', $3, $4, $5)
        """,
        sub_id,
        [sku],
        url,
        "whsec_" + "B" * 44,
        extra.get("failing_since"),
    )
    return sub_id


async def test_a_redelivered_batch_creates_each_delivery_once(
    stack: Settings, db: asyncpg.Connection
) -> None:
    sku = f"IT-{uuid.uuid4().hex[:8].upper()}"
    first, second = (
        await add_subscription(db, sku, "http://127.0.0.1:9/"),
        await add_subscription(db, sku, "http://127.0.0.1:9/"),
    )
    await db.execute("UPDATE notification_subscriptions SET enabled = false WHERE id = $1", second)
    events = [{"event_id": str(uuid.uuid4()), "type": "stock_changed", "sku": sku} for _ in range(3)]
    bad = ConsumerRecord("invmon.events.v1", 0, 99, 0, 0, b"X", b"not json", None, 0, 8, [])
    decoded = [
        d for d in (consumer.decode(r) for r in [*(record(e, i) for i, e in enumerate(events)), bad]) if d
    ]
    assert len(decoded) == 3
    engine = make_engine(stack.database_url)
    try:
        assert await consumer.store(engine, decoded) == 3  # the disabled subscription gets nothing
        assert await consumer.store(engine, decoded) == 0  # the same batch again: nothing new
    finally:
        await engine.dispose()
    count = await db.fetchval(
        "SELECT count(*) FROM notification_deliveries WHERE subscription_id = $1", first
    )
    assert count == 3
    await db.execute("DELETE FROM notification_subscriptions WHERE id = ANY($1::uuid[])", [first, second])


async def test_concurrent_claims_are_disjoint(stack: Settings, db: asyncpg.Connection) -> None:
    sku = f"IT-{uuid.uuid4().hex[:8].upper()}"
    sub = await add_subscription(db, sku, "http://127.0.0.1:9/")
    await db.execute(
        """
        INSERT INTO notification_deliveries
            (event_id, subscription_id, event_type, sku, payload, next_attempt_at)
        SELECT gen_random_uuid(), $1, 'stock_changed', $2, '{}'::jsonb, now() - interval '1 second'
        FROM generate_series(1, 40)
        """,
        sub,
        sku,
    )
    conns = [await asyncpg.connect(pg_dsn(stack)) for _ in range(4)]
    try:
        claims = await asyncio.gather(*(notify_repo.claim_due(c, 15, 60) for c in conns))
    finally:
        for c in conns:
            await c.close()
    ours = [[d.id for d in claim if d.subscription_id == sub] for claim in claims]
    flat = [i for claim in ours for i in claim]
    assert len(flat) == len(set(flat)) == 40
    await db.execute("DELETE FROM notification_subscriptions WHERE id = $1", sub)


async def test_an_endpoint_failing_for_days_is_disabled_and_the_admin_told(
    stack: Settings, db: asyncpg.Connection
) -> None:
    sku = f"IT-{uuid.uuid4().hex[:8].upper()}"
    with smtp_server() as (mailbox, smtp_port):
        async with serving("127.0.0.1") as receiver:
            url = receiver.url(f"/flaky/100/{sku}")
            six_days_ago = datetime.now(UTC) - timedelta(days=6)
            sub = await add_subscription(db, sku, url, failing_since=six_days_ago)
            engine = make_engine(stack.database_url)
            settings = stack.model_copy(
                update={
                    "webhook_allowlist": ["127.0.0.1"],
                    "notify_admin_email": "admin@example.com",
                    "smtp_host": "127.0.0.1",
                    "smtp_port": smtp_port,
                    "notify_retry_schedule_s": [0.0, 0.0, 0.0],
                    "notify_concurrency": 1,  # one delivery per round: the second sees the first's verdict
                }
            )
            async with httpx.AsyncClient(follow_redirects=False) as http:
                dispatcher = Dispatcher(engine, pg_dsn(stack), settings, http)
                try:
                    async with command_log.transaction(engine) as tx:
                        for _ in range(2):
                            await notify_repo.insert_deliveries(
                                tx,
                                [
                                    notify_repo.NewDelivery(
                                        uuid.uuid4(),
                                        sub,
                                        "stock_changed",
                                        sku,
                                        None,
                                        json.dumps({"sku": sku}),
                                    )
                                ],
                            )
                    for _ in range(20):  # a round per due delivery (another test's may be due too)
                        if await dispatcher.round() == 0:
                            break
                finally:
                    await engine.dispose()
            state = await db.fetchrow(
                "SELECT enabled, disabled_reason FROM notification_subscriptions WHERE id = $1", sub
            )
            assert state["enabled"] is False
            assert "failed since" in state["disabled_reason"]
            statuses = await db.fetch(
                """
                SELECT d.status, d.last_error, count(a.id) AS attempts FROM notification_deliveries d
                LEFT JOIN notification_attempts a ON a.delivery_id = d.id
                WHERE d.subscription_id = $1 GROUP BY d.id, d.event_at ORDER BY d.id
                """,
                sub,
            )
            # One attempt disabled the endpoint; the other delivery was then failed without being sent.
            assert sorted(r["attempts"] for r in statuses) == [0, 1]
            assert any(r["last_error"] == "subscription disabled" for r in statuses)
            assert len(receiver.of(f"/flaky/100/{sku}")) == 1
        [notice] = mailbox.to("admin@example.com")
        assert str(sub) in notice.get_payload()[0].get_payload()
        assert "disabled" in notice["Subject"]
    await db.execute("DELETE FROM notification_subscriptions WHERE id = $1", sub)


async def test_a_subscription_deleted_mid_send_leaves_the_dispatcher_working(
    stack: Settings, db: asyncpg.Connection
) -> None:
    sku = f"IT-{uuid.uuid4().hex[:8].upper()}"
    async with serving("127.0.0.1") as receiver:
        sub = await add_subscription(db, sku, receiver.url(f"/hold/{sku}"))
        engine = make_engine(stack.database_url)
        settings = stack.model_copy(update={"webhook_allowlist": ["127.0.0.1"], "notify_concurrency": 1})
        async with httpx.AsyncClient(follow_redirects=False) as http:
            dispatcher = Dispatcher(engine, pg_dsn(stack), settings, http)
            try:
                async with command_log.transaction(engine) as tx:
                    await notify_repo.insert_deliveries(
                        tx,
                        [notify_repo.NewDelivery(uuid.uuid4(), sub, "stock_changed", sku, None, "{}")],
                    )
                sending = asyncio.create_task(dispatcher.round())
                await asyncio.wait_for(receiver.held.wait(), 15)
                await db.execute("DELETE FROM notification_subscriptions WHERE id = $1", sub)
                receiver.release.set()
                assert await sending >= 1  # the vanished delivery is logged, not raised
                other = await add_subscription(db, sku, receiver.url(f"/ok/{sku}"))
                async with command_log.transaction(engine) as tx:
                    await notify_repo.insert_deliveries(
                        tx,
                        [notify_repo.NewDelivery(uuid.uuid4(), other, "stock_changed", sku, None, "{}")],
                    )
                for _ in range(20):
                    if await dispatcher.round() == 0:
                        break
            finally:
                await engine.dispose()
        assert len(receiver.of(f"/ok/{sku}")) == 1
    await db.execute("DELETE FROM notification_subscriptions WHERE id = $1", other)
