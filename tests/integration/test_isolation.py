"""Issue 14: no record, command or partition stops the stock pipeline.

Valid commands for SKUs on every partition, interleaved in random order with every kind of poison record
we can make, go to a real stock worker process. Every valid command must apply exactly once, every poison
record must reach the DLQ (in full, or by reference when it is too large) with a reason, no partition may
go without progress for longer than PROGRESS_BOUND_S, and the consumer group's lag must end at 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2

from contracts.topics import ALL_TOPICS, STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from infra.kafka import COMMAND_TOPIC_MAX_BYTES, DLQ_TOPIC_MAX_BYTES
from infra.settings import Settings
from invmon.stack import kafka_admin, manager
from tests.integration import helpers as h
from tests.processes import Process
from workers.pipeline.faults import RULE_RAISES_ENV

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

RUN_HEADER = "x-test-run"
POISON_HEADER = "x-test-poison"
# The longest a partition may go without progress while it has records to handle.
PROGRESS_BOUND_S = 5.0


def partition_of(sku: str, partitions: int) -> int:
    return int(murmur2(sku.encode()) & 0x7FFFFFFF) % partitions


def skus_on_every_partition(prefix: str, partitions: int, per_partition: int) -> list[str]:
    found: dict[int, list[str]] = {p: [] for p in range(partitions)}
    i = 0
    while any(len(v) < per_partition for v in found.values()):
        sku = f"{prefix}-{i}"
        i += 1
        bucket = found[partition_of(sku, partitions)]
        if len(bucket) < per_partition:
            bucket.append(sku)
    return [s for v in found.values() for s in v]


def pad_json(sku: str, size: int) -> bytes:
    """A receive_stock command (with a command id) padded to about `size` bytes of compressible JSON."""
    body = {**h.receive(sku, 1), "padding": ""}
    raw = json.dumps(body).encode()
    body["padding"] = "ab" * ((size - len(raw)) // 2)
    return json.dumps(body).encode()


Record = tuple[str, bytes | None, bytes, list[tuple[str, bytes]], bool]  # kind, key, value, headers, gzip


def poison_records(run: str, skus: list[str], rule_prefix: str, partitions: int) -> Iterator[Record]:
    """One of each poison kind (kind, key, value, extra headers, produce gzip-compressed)."""
    sku = skus[0]
    yield "not_json", sku.encode(), b"not json {", [], False
    yield "wrong_schema", sku.encode(), h.encode({**h.receive(sku, 1), "quantity": "many"}), [], False
    yield "unknown_type", sku.encode(), h.encode({**h.receive(sku, 1), "type": "teleport_stock"}), [], False
    # Larger than any DLQ request: gzip-compressed by its producer, it passes the command topic's limit.
    yield "gzip_huge", sku.encode(), pad_json(sku, DLQ_TOPIC_MAX_BYTES + 1_000_000), [], True
    yield "gzip_2mb", sku.encode(), pad_json(sku, 2_000_000), [], True
    # Uncompressible and within 200 bytes of the command topic's limit (the record batch holds this one).
    near = COMMAND_TOPIC_MAX_BYTES - 200 - 61 - 40 - len(sku) - len(run) - 40
    yield "near_limit", sku.encode(), os.urandom(near), [], False
    yield "binary_header", sku.encode(), b"{}", [("x-binary", b"\xff\xfe\x00\x80")], False
    other = next(s for s in skus if partition_of(s, partitions) != partition_of(sku, partitions))
    yield "key_mismatch", other.encode(), h.encode(h.receive(sku, 1)), [], False
    # Outside PostgreSQL's (and Python's UTC) range once normalised; the SKU has stock to reserve.
    stocked = f"{skus[0]}-TS"
    out_of_range = {
        **h.reserve(stocked, f"r-{uuid.uuid4().hex[:8]}", 1),
        "expires_at": "9999-12-31T23:59:59.999999-23:59",
    }
    yield "timestamp_range", stocked.encode(), h.encode(out_of_range), [], False
    raising = f"{rule_prefix}-{partition_of(sku, partitions)}"
    yield "rule_raises", raising.encode(), h.encode(h.register(raising)), [], False


async def read_dlq(settings: Settings, run: str, want: set[str], within: float) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=DLQ_TOPIC_MAX_BYTES * 2,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(STOCK_COMMANDS_DLQ.name, p) for p in range(settings.kafka_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: dict[str, Any] = {}
        deadline = time.monotonic() + within
        while not want <= set(found):
            if time.monotonic() >= deadline:
                raise AssertionError(f"not on the DLQ: {sorted(want - set(found))}")
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    headers = dict(record.headers)
                    if headers.get(RUN_HEADER) == run.encode():
                        found[headers[POISON_HEADER].decode()] = record
        return found
    finally:
        await consumer.stop()


async def lag(settings: Settings) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.stock_consumer_group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(STOCK_COMMANDS.name, p) for p in range(settings.kafka_partitions)]
        ends = await consumer.end_offsets(tps)
        total = 0
        for tp in tps:
            committed = await consumer.committed(tp)
            total += ends[tp] - (committed or 0)
        return total
    finally:
        await consumer.stop()


@pytest.fixture
def worker(stack: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Process, str]]:
    rule_prefix = f"BOOM{h.run_id()}"
    process = h.start_worker(stack.stock_worker_port, tmp_path, {RULE_RAISES_ENV: rule_prefix})
    try:
        yield process, rule_prefix
    finally:
        process.stop()


async def run_fault_test(
    settings: Settings, rule_prefix: str, *, per_partition: int, receives: int, rounds: int
) -> None:
    run = h.run_id()
    partitions = settings.kafka_partitions
    skus = skus_on_every_partition(f"ISO{run}", partitions, per_partition)
    rng = random.Random(run)
    registrations = [h.register(s) for s in skus] + [h.register(f"{skus[0]}-TS", initial_quantity=5)]
    receipts = [h.receive(rng.choice(skus), 1) for _ in range(receives)]
    poison = [p for _ in range(rounds) for p in poison_records(run, skus, rule_prefix, partitions)]
    # Interleave in random order; a SKU's register stays ahead of its receipts (per-SKU order).
    valid: list[Any] = list(receipts)
    rng.shuffle(valid)
    stream: list[Any] = [*registrations, *valid]
    for item in poison:
        stream.insert(rng.randrange(len(registrations), len(stream) + 1), item)

    plain = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=COMMAND_TOPIC_MAX_BYTES * 2
    )
    gzipped = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        compression_type="gzip",
        max_request_size=64 * 1024 * 1024,
    )
    await plain.start()
    await gzipped.start()
    conn = await asyncpg.connect(h.pg_dsn(settings))
    try:
        started = time.monotonic()
        acks = []
        for i, entry in enumerate(stream):
            if isinstance(entry, dict):
                headers = [(RUN_HEADER, run.encode())]
                value = h.encode(entry)
                acks.append(
                    await plain.send(STOCK_COMMANDS.name, value, entry["sku"].encode(), headers=headers)
                )
                continue
            kind, key, value, extra, compress = entry
            headers = [(RUN_HEADER, run.encode()), (POISON_HEADER, f"{kind}-{i}".encode()), *extra]
            producer = gzipped if compress else plain
            acks.append(await producer.send(STOCK_COMMANDS.name, value, key, headers=headers))
        await asyncio.gather(*acks)

        valid_ids = [uuid.UUID(c["command_id"]) for c in [*registrations, *receipts]]

        async def done() -> int:
            return await h.processed_count(conn, valid_ids)

        await h.wait_until(done, lambda n: n == len(valid_ids), within=60, what="every valid command")
        elapsed = time.monotonic() - started

        rows = await conn.fetch(
            "SELECT command_id, status FROM processed_commands WHERE command_id = ANY($1::uuid[])", valid_ids
        )
        assert {r["status"] for r in rows} == {"applied"}, rows
        expected = {s: sum(1 for c in receipts if c["sku"] == s) for s in skus}
        rows = await conn.fetch("SELECT sku, stock_quantity FROM items WHERE sku = ANY($1::text[])", skus)
        states = {r["sku"]: r["stock_quantity"] for r in rows}
        assert states == expected  # each receipt exactly once
        ledger = await conn.fetchval("SELECT count(*) FROM stock_ledger WHERE sku = ANY($1::text[])", skus)
        assert ledger == len(receipts)
        reserved = await conn.fetchval("SELECT reserved_quantity FROM items WHERE sku = $1", f"{skus[0]}-TS")
        assert reserved == 0

        # Progress: each partition's applied commands, from the first send, without a longer gap.
        applied_at = await conn.fetch(
            "SELECT sku, applied_at FROM processed_commands WHERE command_id = ANY($1::uuid[])"
            " ORDER BY applied_at",
            valid_ids,
        )
        first = min(r["applied_at"] for r in applied_at)
        for p in range(partitions):
            times = [first] + [r["applied_at"] for r in applied_at if partition_of(r["sku"], partitions) == p]
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
            assert max(gaps, default=0) <= PROGRESS_BOUND_S, (p, max(gaps))

        wanted = {f"{e[0]}-{i}" for i, e in enumerate(stream) if not isinstance(e, dict)}
        letters = await read_dlq(settings, run, wanted, within=60)
        for name, record in letters.items():
            got: dict[str, bytes] = dict(record.headers)
            assert got.get("x-dlq-reason"), name
            if name.startswith("gzip_huge"):
                assert got["x-dlq-by-reference"] == b"true"
                assert int(got["x-origin-size"]) > DLQ_TOPIC_MAX_BYTES
                assert len(record.value) <= 1024
            elif name.startswith(("gzip_2mb", "near_limit")):
                assert "x-dlq-by-reference" not in got, name
            if name.startswith("rule_raises"):
                assert b"RuleFault" in got["x-dlq-reason"], got["x-dlq-reason"]
        for i, entry in enumerate(stream):
            if not isinstance(entry, dict) and entry[0] == "gzip_huge":
                digest = hashlib.sha256(entry[2]).hexdigest().encode()
                assert dict(letters[f"gzip_huge-{i}"].headers)["x-origin-sha256"] == digest

        # Dead letters whose command id is readable are recorded for the command status.
        readable = ("rule_raises", "timestamp_range")
        raising_ids = [
            uuid.UUID(json.loads(e[2])["command_id"])
            for e in stream
            if not isinstance(e, dict) and e[0] in readable
        ]
        recorded = await conn.fetchval(
            "SELECT count(DISTINCT command_id) FROM dead_letters WHERE command_id = ANY($1::uuid[])",
            raising_ids,
        )
        assert recorded == len(raising_ids)

        await h.wait_until(lambda: lag(settings), lambda n: n == 0, within=30, what="lag 0")
        print(f"fault test: {len(valid_ids)} valid, {len(poison)} poison, all applied in {elapsed:.1f}s")
    finally:
        await conn.close()
        await plain.stop()
        await gzipped.stop()


async def test_valid_commands_apply_around_every_kind_of_poison(
    worker: tuple[Process, str], stack: Settings
) -> None:
    await run_fault_test(stack, worker[1], per_partition=2, receives=120, rounds=1)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_valid_commands_apply_around_every_kind_of_poison_at_volume(
    worker: tuple[Process, str], stack: Settings
) -> None:
    await run_fault_test(stack, worker[1], per_partition=5, receives=3000, rounds=4)


async def test_a_partition_waiting_on_a_lock_does_not_hold_the_others(
    worker: tuple[Process, str], stack: Settings
) -> None:
    """A row locked elsewhere (an operator's open transaction) stops its partition only: the batch that
    meets the lock timeout is split per partition, the locked one is paused with back-off, and the other
    partitions' commands apply meanwhile. Released, the waiting command applies once."""
    run = h.run_id()
    partitions = stack.kafka_partitions
    skus = skus_on_every_partition(f"LCK{run}", partitions, 1)
    locked = skus[0]
    async with h.CommandProducer(stack) as producer:
        await producer.publish((s.encode(), h.encode(h.register(s)), None) for s in skus)
        conn = await asyncpg.connect(h.pg_dsn(stack))
        holder = await asyncpg.connect(h.pg_dsn(stack))
        try:
            await h.wait_until(
                lambda: conn.fetchval("SELECT count(*) FROM items WHERE sku = ANY($1::text[])", skus),
                lambda n: n == len(skus),
                within=20,
                what="registrations",
            )
            tx = holder.transaction()
            await tx.start()
            await holder.execute("SELECT 1 FROM items WHERE sku = $1 FOR UPDATE", locked)
            rounds = [[h.receive(s, 1) for s in skus] for _ in range(3)]
            started = time.monotonic()
            for commands in rounds:
                await producer.publish((c["sku"].encode(), h.encode(c), None) for c in commands)
            others = [uuid.UUID(c["command_id"]) for r in rounds for c in r if c["sku"] != locked]
            waiting = [uuid.UUID(c["command_id"]) for r in rounds for c in r if c["sku"] == locked]
            await h.wait_until(
                lambda: h.processed_count(conn, others),
                lambda n: n == len(others),
                within=PROGRESS_BOUND_S,
                what="the other partitions' commands while one row is locked",
            )
            took = time.monotonic() - started
            assert await h.processed_count(conn, waiting) == 0
            await tx.rollback()
            await h.wait_until(
                lambda: h.processed_count(conn, waiting),
                lambda n: n == len(waiting),
                within=20,
                what="the locked SKU's commands once released",
            )
            assert await conn.fetchval("SELECT stock_quantity FROM items WHERE sku = $1", locked) == 3
            await h.wait_until(lambda: lag(stack), lambda n: n == 0, within=30, what="lag 0")
            print(f"other partitions applied in {took:.1f}s while one row was locked")
        finally:
            await holder.close()
            await conn.close()


async def test_a_worker_refuses_to_start_when_the_dlq_cannot_carry_the_command_topic(
    stack: Settings, tmp_path: Path
) -> None:
    """An older stack's DLQ (the broker's default 1 MiB) would stop the pipeline at the first large bad
    record: the worker says so in one line and does not start; `invmon topics create` fixes the topic."""
    client = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await client.start()
    try:
        small = {"max.message.bytes": str(COMMAND_TOPIC_MAX_BYTES)}
        await client.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, STOCK_COMMANDS_DLQ.name, configs=small)]
        )
        refusal = "it started"
        try:
            h.start_worker(stack.stock_worker_port, tmp_path).stop()
        except RuntimeError as refused:
            refusal = str(refused)
        assert f"{STOCK_COMMANDS_DLQ.name} max.message.bytes={COMMAND_TOPIC_MAX_BYTES}" in refusal
    finally:
        await kafka_admin.create(stack.kafka_bootstrap, list(ALL_TOPICS), stack.kafka_partitions, 1)
        await client.close()
    h.start_worker(stack.stock_worker_port, tmp_path).stop()  # fixed: it starts


async def postgres_pid(settings: Settings) -> int | None:
    rows = {row.name: row for row in await manager.status_async(settings)}
    return rows["postgres"].pid


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_an_outage_of_postgresql_waits_and_loses_nothing(
    worker: tuple[Process, str], stack: Settings
) -> None:
    """PostgreSQL stops (fast shutdown) while commands keep coming: the worker's partitions wait, paused
    with back-off (nothing dead-lettered, nothing committed past); once it is back every command applies
    exactly once and the lag ends at 0."""
    process, _ = worker
    run = h.run_id()
    skus = skus_on_every_partition(f"OUT{run}", stack.kafka_partitions, 2)
    before = [h.register(s) for s in skus]
    during = [h.receive(s, 1) for s in skus for _ in range(5)]
    async with h.CommandProducer(stack) as producer:
        await producer.publish((c["sku"].encode(), h.encode(c), None) for c in before)
        async with h.database(stack) as conn:
            ids = [uuid.UUID(c["command_id"]) for c in before]
            await h.wait_until(
                lambda: h.processed_count(conn, ids), lambda n: n == len(ids), within=20, what="before"
            )
        pid = await postgres_pid(stack)
        assert pid is not None
        try:
            psutil.Process(pid).send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
            await h.wait_until(lambda: postgres_pid(stack), lambda p: p is None, within=60, what="pg down")
            await producer.publish((c["sku"].encode(), h.encode(c), None) for c in during)

            async def waiting() -> int:
                return len(h.log_lines([process.log], "partition_waiting"))

            await h.wait_until(waiting, lambda n: n >= 2, within=30, what="partitions waiting")
        finally:
            await asyncio.to_thread(manager.up, stack)
    async with h.database(stack) as conn:
        ids = [uuid.UUID(c["command_id"]) for c in during]
        await h.wait_until(
            lambda: h.processed_count(conn, ids), lambda n: n == len(ids), within=60, what="during"
        )
        rows = await conn.fetch("SELECT sku, stock_quantity FROM items WHERE sku = ANY($1::text[])", skus)
        assert {r["sku"]: r["stock_quantity"] for r in rows} == dict.fromkeys(skus, 5)
        dead = await conn.fetchval(
            "SELECT count(*) FROM dead_letters WHERE command_id = ANY($1::uuid[])", ids
        )
        assert dead == 0
    await h.wait_until(lambda: lag(stack), lambda n: n == 0, within=30, what="lag 0")
