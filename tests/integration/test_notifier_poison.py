"""Poisoned records on invmon.events.v1 among good events: the notifier process delivers every good event
(a real webhook receiver and a real SMTP server), records each poisoned one in notifier_skipped_events with
its reason, and its consumer group ends with no lag. Poison: not JSON, a huge value that is not JSON, the
wrong schema, a non-UTF-8 header (on a good event: delivered), and two events PostgreSQL refuses to
store (a NUL character, a NaN), which before were retried and nacked for ever with the good events of
their batch."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from pathlib import Path

import asyncpg
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.topics import EVENTS
from infra.kafka import PARTITIONER
from infra.settings import Settings
from invmon.stack import manager
from invmon.stack.procs import terminate
from tests.e2e.notify_support import free_port, serving, smtp_server
from tests.integration.helpers import database, wait_until
from tests.processes import start, wait_ready

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


def good(sku: str, n: int) -> tuple[str, bytes]:
    event_id = str(uuid.uuid4())
    event = {"event_id": event_id, "type": "low_stock_detected", "sku": sku, "available": n, "seq": n}
    return event_id, json.dumps(event).encode()


async def lag(stack: Settings) -> int:
    """Records on the event topic that the notifier's group has not committed past."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(stack.notifier_consumer_group)
        partitions = [TopicPartition(EVENTS.name, p) for p in range(stack.kafka_partitions)]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())


async def test_poisoned_events_are_recorded_and_the_good_ones_delivered(
    stack: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    sku = f"PSN-{uuid.uuid4().hex[:8].upper()}"
    ops = f"ops-{sku.lower()}@example.com"
    with smtp_server() as (mailbox, smtp_port):
        async with serving("127.0.0.1") as receiver:
            subs = [uuid.uuid4(), uuid.uuid4()]
            await db.execute(
                """
                INSERT INTO notification_subscriptions (id, name, skus, kind, url, secret, recipients)
                VALUES ($1, 'poison', $3, 'webhook', $4, $5, '{}'),
                       ($2, 'poison', $3, 'email', NULL, NULL, $6)
                """,
                subs[0],
                subs[1],
                [sku],
                receiver.url(f"/ok/{sku}"),
                "whsec_" + "B" * 44,
                [ops],
            )
            port = free_port()  # a fixed offset can meet an ephemeral port on a busy box
            env = {
                "INVMON_NOTIFIER_PORT": str(port),
                "INVMON_SMTP_HOST": "127.0.0.1",
                "INVMON_SMTP_PORT": str(smtp_port),
                "INVMON_SMTP_STARTTLS": "false",
                "INVMON_WEBHOOK_ALLOWLIST": '["127.0.0.1"]',
                "INVMON_NOTIFY_RETRY_SCHEDULE_S": "[0, 1, 1]",
            }
            notifier = start("notifier", port, tmp_path, env)
            producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, partitioner=PARTITIONER)
            await producer.start()
            try:
                wait_ready(notifier)
                goods = [good(sku, n) for n in range(6)]
                nul_id, nan_id = uuid.uuid4(), uuid.uuid4()
                poison: list[tuple[str, bytes]] = [
                    ("not JSON", b"{not an event"),
                    ("huge, not JSON", b"\xff" + b"x" * (900 << 10)),
                    ("wrong schema", json.dumps({"sku": sku, "type": "low_stock_detected"}).encode()),
                    (
                        "sku not a string",
                        json.dumps({"event_id": str(uuid.uuid4()), "type": "x", "sku": 7}).encode(),
                    ),
                    (
                        "NUL",
                        json.dumps(
                            {"event_id": str(nul_id), "type": "out_of_stock", "sku": sku, "note": "\u0000"}
                        ).encode(),
                    ),
                    (
                        "NaN",
                        b'{"event_id": "%s", "type": "out_of_stock", "sku": "%s", "available": NaN}'
                        % (str(nan_id).encode(), sku.encode()),
                    ),
                ]
                # Interleaved, one key: one partition, so good events before and after each poison.
                poisoned: dict[tuple[int, int], tuple[str, bytes]] = {}
                for i, (_, value) in enumerate(goods):
                    if i < len(poison):
                        sent = await (await producer.send(EVENTS.name, poison[i][1], key=sku.encode()))
                        poisoned[(sent.partition, sent.offset)] = poison[i]
                    headers = [("x-binary", b"\xff\xfe")] if i == 2 else []
                    await (await producer.send(EVENTS.name, value, key=sku.encode(), headers=headers))
                good_ids = {event_id for event_id, _ in goods}

                async def delivered() -> set[str]:
                    return set(receiver.by_id(f"/ok/{sku}")) & good_ids

                await wait_until(delivered, lambda ids: ids == good_ids, within=60, what="every good webhook")
                [partition] = {p for p, _ in poisoned}
                rows = await wait_until(
                    lambda: db.fetch(
                        """
                        SELECT "offset", reason, size, sha256, head FROM notifier_skipped_events
                        WHERE topic = $1 AND partition = $2 AND "offset" = ANY($3::bigint[])
                        """,
                        EVENTS.name,
                        partition,
                        [o for _, o in poisoned],
                    ),
                    lambda found: len(found) == len(poisoned),
                    within=30,
                    what="every poisoned record recorded",
                )
                reasons = {poisoned[(partition, r["offset"])][0]: r["reason"] for r in rows}
                assert "JSONDecodeError" in reasons["not JSON"]
                assert "UnicodeDecodeError" in reasons["huge, not JSON"]
                assert "KeyError('event_id')" in reasons["wrong schema"]
                assert reasons["sku not a string"] == "type and sku must be non-empty strings"
                assert reasons["NUL"].startswith("UntranslatableCharacterError"), reasons["NUL"]
                assert reasons["NaN"].startswith("InvalidTextRepresentationError"), reasons["NaN"]
                for r in rows:
                    value = poisoned[(partition, r["offset"])][1]
                    assert (r["size"], r["sha256"]) == (len(value), hashlib.sha256(value).hexdigest())
                    assert r["head"] == value[:1024]
                assert await wait_until(lambda: lag(stack), lambda n: n == 0, within=30, what="lag 0") == 0
            finally:
                await producer.stop()
                notifier.stop()
            # Each good event was delivered once by webhook and once by email.
            assert all(len(hits) == 1 for hits in receiver.by_id(f"/ok/{sku}").values())
            assert len(mailbox.to(ops)) == len(goods)
            statuses = await db.fetch(
                "SELECT event_id, status FROM notification_deliveries WHERE sku = $1", sku
            )
            assert {str(r["event_id"]) for r in statuses} == good_ids
            assert {r["status"] for r in statuses} == {"delivered"}
            await db.execute("DELETE FROM notification_subscriptions WHERE id = ANY($1::uuid[])", subs)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_a_postgresql_outage_is_waited_out_not_skipped(
    stack: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """The failures PostgreSQL's absence really raises (through SQLAlchemy's pool and asyncpg) must read as
    an outage: the events wait and are delivered afterwards, none is skipped."""
    sku = f"PGO-{uuid.uuid4().hex[:8].upper()}"
    async with serving("127.0.0.1") as receiver:
        sub = uuid.uuid4()
        await db.execute(
            "INSERT INTO notification_subscriptions (id, name, skus, kind, url, secret) "
            "VALUES ($1, 'outage', $2, 'webhook', $3, $4)",
            sub,
            [sku],
            receiver.url(f"/ok/{sku}"),
            "whsec_" + "B" * 44,
        )
        await db.close()
        port = free_port()
        env = {"INVMON_NOTIFIER_PORT": str(port), "INVMON_WEBHOOK_ALLOWLIST": '["127.0.0.1"]'}
        notifier = start("notifier", port, tmp_path, env)
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, partitioner=PARTITIONER)
        await producer.start()
        try:
            wait_ready(notifier)
            rows = {row.name: row for row in await manager.status_async(stack)}
            pid = rows["postgres"].pid
            assert pid is not None
            try:
                await terminate(psutil.Process(pid), 60)
                goods = [good(sku, n) for n in range(4)]
                for _, value in goods:
                    await (await producer.send(EVENTS.name, value, key=sku.encode()))

                async def retried() -> bool:
                    return "store_retry" in notifier.log.read_text()

                await wait_until(retried, bool, within=60, what="the notifier retrying against no PostgreSQL")
            finally:
                await asyncio.to_thread(manager.up, stack)
            good_ids = {event_id for event_id, _ in goods}

            async def delivered() -> set[str]:
                return set(receiver.by_id(f"/ok/{sku}")) & good_ids

            await wait_until(
                delivered, lambda ids: ids == good_ids, within=90, what="every event after the outage"
            )
            assert await wait_until(lambda: lag(stack), lambda n: n == 0, within=30, what="lag 0") == 0
        finally:
            await producer.stop()
            notifier.stop()
    async with database(stack) as db:
        skipped = await db.fetchval(
            "SELECT count(*) FROM notifier_skipped_events WHERE head LIKE $1", f"%{sku}%".encode()
        )
        assert skipped == 0
        await db.execute("DELETE FROM notification_subscriptions WHERE id = $1", sub)
