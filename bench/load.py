"""Load and clean slate for the stock benchmarks: generated commands, topic and table resets, registration.

Only ever point this at your own stack: it deletes the stock command topics and truncates the stock tables.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench import stacks
from contracts.stock_commands import (
    AdjustStock,
    ReceiveStock,
    RegisterItem,
    ReleaseReservation,
    ReserveStock,
    StockCommand,
)
from contracts.topics import STOCK_COMMANDS, STOCK_COMMANDS_DLQ, Topic
from db.engine import make_engine
from infra.settings import Settings, get_settings
from invmon.stack import kafka_admin
from workers.pipeline.batch import apply_batch
from workers.rules.alerts import AlertPolicy
from workers.stock_worker.apply import StockSession

STOCK_TABLES = ("items", "item_stock", "reservations", "processed_commands", "stock_ledger", "outbox")
BENCH_TOPICS = (STOCK_COMMANDS, STOCK_COMMANDS_DLQ)
HEADERS = [("content-type", b"application/json")]
INITIAL_ON_HAND = 100
ADJUST_REASONS = ("damage", "loss", "theft", "found", "return", "correction", "other")


def sku_name(index: int) -> str:
    return f"BENCH-{index:05d}"


def location_codes(count: int) -> list[str]:
    """The bench's own locations; 0: commands carry no location (all stock at the default)."""
    return [f"BENCH-L{i}" for i in range(count)]


def asyncpg_dsn(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@dataclass(slots=True)
class _SkuSim:
    """What the rules will make of this SKU's commands, so the load stays mostly valid."""

    on_hand: int = INITIAL_ON_HAND
    reserved: int = 0
    active: dict[str, int] = field(default_factory=dict)
    next_reservation: int = 0
    prefix: str = "r"


@dataclass(frozen=True, slots=True)
class Load:
    records: list[tuple[bytes, bytes]]  # (key, value), in publish order
    valid: int  # records that decode: each ends as one processed_commands row
    bad: int  # records that must go to the dead-letter topic
    expected_rejections: int
    mix: dict[str, int]


def registrations(skus: int, now: datetime, locations: int = 0) -> list[StockCommand]:
    """Every SKU with INITIAL_ON_HAND units, at each of the bench's locations when there are some."""
    codes = location_codes(locations)
    first = codes[0] if codes else None
    stocked: list[StockCommand] = [
        ReceiveStock(
            command_id=uuid.uuid4(),
            sku=sku_name(i),
            issued_at=now,
            actor="bench",
            source="bench",
            quantity=INITIAL_ON_HAND,
            location=code,
        )
        for code in codes[1:]
        for i in range(skus)
    ]
    return [*_registrations(skus, now, first), *stocked]


def _registrations(skus: int, now: datetime, location: str | None) -> list[StockCommand]:
    return [
        RegisterItem(
            command_id=uuid.uuid4(),
            sku=sku_name(i),
            issued_at=now,
            actor="bench",
            source="bench",
            name=f"Bench item {i}",
            category="bench",
            initial_quantity=INITIAL_ON_HAND,
            min_stock_level=10,
            cost_price=Decimal("1.25"),
            location=location,
        )
        for i in range(skus)
    ]


def generate(
    count: int,
    skus: int,
    *,
    seed: int,
    bad_per_mille: float,
    reject_per_mille: float = 10.0,
    locations: int = 0,
) -> Load:
    """`count` records over `skus` registered SKUs: receive 35 %, adjust 20 %, reserve 30 %, release 15 %,
    plus about `reject_per_mille` / 1000 reservations of more than is available (rejected by the rules) and
    `bad_per_mille` / 1000 records that must be dead-lettered (not JSON, schema, key mismatch). With
    `locations`, each command names one of the bench's locations, drawn at random (a release acts at its
    reservation's); without, the records are the same as before locations existed."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    codes = location_codes(locations)
    # One simulation per (location, SKU); reservation ids stay unique per SKU across its locations.
    places = [
        [_SkuSim(prefix=f"r{n}" if codes else "r") for _ in range(skus)] for n in range(len(codes) or 1)
    ]
    records: list[tuple[bytes, bytes]] = []
    mix: Counter[str] = Counter()
    rejections = bad = 0
    for _ in range(count):
        index = rng.randrange(skus)
        sku = sku_name(index)
        envelope = {
            "command_id": uuid.uuid4(), "sku": sku, "issued_at": now, "actor": "bench", "source": "bench",
        }  # fmt: skip
        if rng.random() * 1000 < bad_per_mille:
            bad += 1
            kind = rng.randrange(3)
            if kind == 0:
                records.append((sku.encode(), b"{not json"))
            elif kind == 1:
                records.append((sku.encode(), b'{"type": "receive_stock", "sku": "' + sku.encode() + b'"}'))
            else:
                body = ReceiveStock(**envelope, quantity=1).model_dump_json().encode()
                records.append((b"WRONG-KEY", body))
            mix["dead_letter"] += 1
            continue
        at = rng.randrange(len(codes)) if codes else 0
        sim = places[at][index]
        where = {"location": codes[at]} if codes else {}
        roll = rng.random()
        command: StockCommand
        if rng.random() * 1000 < reject_per_mille:
            quantity = sim.on_hand - sim.reserved + rng.randint(1, 10)
            reservation_id = f"{sim.prefix}-{sim.next_reservation}"
            sim.next_reservation += 1
            command = ReserveStock(**envelope, reservation_id=reservation_id, quantity=quantity, **where)
            rejections += 1
        elif roll < 0.35:
            quantity = rng.randint(1, 20)
            command = ReceiveStock(**envelope, quantity=quantity, **where)
            sim.on_hand += quantity
        elif roll < 0.55:
            delta = rng.choice((-5, -4, -3, -2, -1, 1, 2, 3))
            reason = rng.choice(ADJUST_REASONS)
            command = AdjustStock(**envelope, delta=delta, reason_code=reason, **where)
            if sim.on_hand + delta < sim.reserved:
                rejections += 1
            else:
                sim.on_hand += delta
        elif roll < 0.85 or not sim.active:
            quantity = rng.randint(1, 5)
            reservation_id = f"{sim.prefix}-{sim.next_reservation}"
            sim.next_reservation += 1
            command = ReserveStock(**envelope, reservation_id=reservation_id, quantity=quantity, **where)
            if quantity > sim.on_hand - sim.reserved:
                rejections += 1
            else:
                sim.reserved += quantity
                sim.active[reservation_id] = quantity
        else:
            reservation_id = next(iter(sim.active))
            sim.reserved -= sim.active.pop(reservation_id)
            command = ReleaseReservation(**envelope, reservation_id=reservation_id)
        mix[command.type] += 1
        records.append((sku.encode(), command.model_dump_json().encode()))
    return Load(records, count - bad, bad, rejections, dict(mix))


async def publish(bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]]) -> float:
    """Publish like the edge does (acks=all, idempotent, key = SKU), many sends in flight. Returns seconds."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=60_000,
    )
    started = time.perf_counter()
    await producer.start()
    try:
        pending: list[asyncio.Future[object]] = []
        for key, value in records:
            pending.append(await producer.send(topic, value, key=key, headers=HEADERS))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def reset_topics(
    bootstrap: str, partitions: int, replication: int, topics: Sequence[Topic] = BENCH_TOPICS
) -> None:
    """Delete and recreate the topics, so a fresh consumer group reads exactly this run's records."""
    names = {t.name for t in topics}
    async with kafka_admin.admin_client(bootstrap, 30_000) as client:
        doomed = sorted(names & set(await client.list_topics()))
        if doomed:
            await client.delete_topics(doomed)
        await _wait(client, lambda present: not (names & present), "topic deletion")
    for _ in range(50):
        # create() ignores "already exists", which a topic still being deleted also answers: check, retry.
        await kafka_admin.create(bootstrap, list(topics), partitions, replication)
        info = await kafka_admin.describe(bootstrap, sorted(names))
        if all(n in info and info[n].partitions == partitions and info[n].all_have_leaders for n in names):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("topics did not come back")


async def _wait(client: AIOKafkaAdminClient, done: object, what: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if done(set(await client.list_topics())):  # type: ignore[operator]
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(what)


async def fresh_stock(skus: int, locations: int = 0) -> tuple[Settings, AlertPolicy]:
    """The settings of the stack this benchmark may wipe (never .stack or .stack-test), its stock tables
    emptied and `skus` items registered straight through the worker's apply_batch."""
    settings = get_settings()
    if stacks.default_stack(settings.stack_dir):
        raise SystemExit("set INVMON_STACK_DIR to your own stack")
    await reset_tables(settings.database_url)
    await register_directly(settings.database_url, skus, settings.alert_clear_margin_pct, locations)
    return settings, AlertPolicy(settings.alert_clear_margin_pct)


async def reset_tables(database_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(f"TRUNCATE {', '.join(STOCK_TABLES)}")
    finally:
        await conn.close()


async def ensure_locations(database_url: str, count: int) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.executemany(
            "INSERT INTO locations (code, name, kind) VALUES ($1, $1, 'warehouse') ON CONFLICT DO NOTHING",
            [(code,) for code in location_codes(count)],
        )
    finally:
        await conn.close()


async def register_directly(database_url: str, skus: int, clear_margin_pct: int, locations: int = 0) -> float:
    """Register the SKUs with the worker's own apply path (one transaction), then ANALYZE. Returns seconds."""
    started = time.perf_counter()
    if locations:
        await ensure_locations(database_url, locations)
    engine = make_engine(database_url)
    try:
        now = datetime.now(UTC)
        commands = registrations(skus, now, locations)
        report = await apply_batch(engine, StockSession(AlertPolicy(clear_margin_pct)), commands, now)
        if len(report.applied) != len(commands):
            raise RuntimeError(
                f"registration: {len(report.applied)} of {len(commands)} applied, {report.rejected[:3]}"
            )
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await conn.execute(f"ANALYZE {', '.join(STOCK_TABLES)}")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    info = await kafka_admin.describe(bootstrap, [topic])
    return [TopicPartition(topic, p) for p in range(info[topic].partitions)] if topic in info else []


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """End offset of each partition of `topic` (empty when the topic does not exist)."""
    return await _end_offsets(bootstrap, await _partitions(bootstrap, topic))


async def _end_offsets(bootstrap: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions)) if partitions else {}
    finally:
        await consumer.stop()


async def topic_end_total(bootstrap: str, topic: str) -> int:
    """Sum of end offsets: the number of records on a freshly created topic."""
    return sum((await end_offsets(bootstrap, topic)).values())


async def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of `topic` not yet covered by `group`'s committed offsets."""
    async with kafka_admin.admin_client(bootstrap, 10_000) as client:
        committed = await client.list_consumer_group_offsets(group)
    ends = await end_offsets(bootstrap, topic)
    return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())
