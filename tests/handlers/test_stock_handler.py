"""The stock subscriber in memory (TestKafkaBroker) over the real PostgreSQL: routing, shapes, DLQ headers,
idempotency. Delivery itself (offsets, rebalances, crashes) is proven against real Kafka elsewhere."""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.middlewares import AckPolicy
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from contracts.topics import STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from db.engine import make_engine
from infra.kafka import make_broker, unsafe_settings
from infra.settings import Settings
from workers.intake import ORIGIN_OFFSET_HEADER, ORIGIN_TOPIC_HEADER, REASON_HEADER
from workers.pipeline.consumer import Runtime, raw_batch, tolerant_batch_parser
from workers.stock_worker.handler import register

pytestmark = pytest.mark.stack


@pytest.fixture
async def engine(stack: Settings) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(stack.database_url)
    yield engine
    await engine.dispose()


class RecordingSender:
    """Stands in for the worker's raw dead-letter producer: records what would be sent, acks at once.
    (The real producer and DLQ topic are exercised end to end in tests/e2e/test_dlq.py.)"""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[None]:
        self.sent.append((topic, value, key, list(headers or [])))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


@pytest.fixture
def dead_letters() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
async def broker(
    stack: Settings, engine: AsyncEngine, dead_letters: RecordingSender
) -> AsyncIterator[KafkaBroker]:
    broker = make_broker(stack, client_id="handler-test")
    register(broker, stack, Runtime(engine, dead_letters))
    async with TestKafkaBroker(broker) as test_broker:
        yield test_broker


def command(sku: str, type_: str, **fields: Any) -> dict[str, Any]:
    return {
        "command_id": str(uuid.uuid4()),
        "sku": sku,
        "issued_at": datetime.now(UTC).isoformat(),
        "actor": "handler-test",
        "source": "test",
        "type": type_,
        **fields,
    }


async def send(broker: KafkaBroker, body: bytes | dict[str, Any], key: str) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    await broker.publish(raw, STOCK_COMMANDS.name, key=key.encode(), headers={"x-test": "handler"})


async def fetch(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def test_valid_commands_apply_and_bad_records_are_dead_lettered(
    broker: KafkaBroker, engine: AsyncEngine, dead_letters: RecordingSender
) -> None:
    def dead_lettered(reason: str) -> float:
        labels = {"worker": "stock", "reason": reason}
        return REGISTRY.get_sample_value("invmon_dead_letters_total", labels) or 0.0

    categories = ("undecodable", "invalid", "key_mismatch")
    before = {c: dead_lettered(c) for c in categories}
    sku = f"H-{uuid.uuid4().hex[:8].upper()}"
    await send(broker, command(sku, "register_item", name="Handler mug", initial_quantity=4), sku)
    await send(broker, b"{not json", sku)
    await send(broker, command(sku, "receive_stock", quantity=-1), sku)
    await send(broker, command(sku, "receive_stock", quantity=2), "OTHER-KEY")
    await send(broker, command(sku, "receive_stock", quantity=2), sku)

    rows = await fetch(engine, "SELECT stock_quantity, version FROM items WHERE sku = :sku", sku=sku)
    assert rows == [(6, 2)]
    letters = dead_letters.sent[-3:]
    assert {topic for topic, *_ in letters} == {STOCK_COMMANDS_DLQ.name}
    reasons = [dict(headers)[REASON_HEADER].decode() for *_, headers in letters]
    assert reasons[0].startswith("invalid command: body: Invalid JSON")
    assert "quantity" in reasons[1]
    assert "does not match sku" in reasons[2]
    _, body, key, headers = letters[0]
    assert (body, key) == (b"{not json", sku.encode())
    assert dict(headers)[ORIGIN_TOPIC_HEADER] == STOCK_COMMANDS.name.encode()
    assert ORIGIN_OFFSET_HEADER in dict(headers)
    assert ("x-test", b"handler") in headers  # the original headers travel with the record
    # Counted by bounded reason category, never by the free-text reason.
    assert {c: dead_lettered(c) - before[c] for c in categories} == dict.fromkeys(categories, 1.0)


async def test_a_command_id_applies_once(broker: KafkaBroker, engine: AsyncEngine) -> None:
    sku = f"H-{uuid.uuid4().hex[:8].upper()}"
    await send(broker, command(sku, "register_item", name="Once"), sku)
    receive = command(sku, "receive_stock", quantity=5)
    for _ in range(3):
        await send(broker, receive, sku)
    assert await fetch(engine, "SELECT stock_quantity FROM items WHERE sku = :sku", sku=sku) == [(5,)]
    processed = await fetch(
        engine,
        "SELECT status, actor FROM processed_commands WHERE command_id = :id",
        id=receive["command_id"],
    )
    assert processed == [("applied", "handler-test")]  # its sender: the edge shows the outcome to it only
    ledger = await fetch(engine, "SELECT delta FROM stock_ledger WHERE sku = :sku", sku=sku)
    assert ledger == [(5,)]


async def test_rejection_is_recorded_with_its_reason_and_announced(
    broker: KafkaBroker, engine: AsyncEngine
) -> None:
    sku = f"H-{uuid.uuid4().hex[:8].upper()}"
    reserve = command(sku, "reserve_stock", reservation_id="r-1", quantity=1)
    await send(broker, reserve, sku)
    processed = await fetch(
        engine,
        "SELECT status, reason FROM processed_commands WHERE command_id = :id",
        id=reserve["command_id"],
    )
    assert processed[0][0] == "rejected"
    assert processed[0][1].startswith("unknown_sku")
    outbox = await fetch(
        engine,
        "SELECT event_type, channel FROM outbox WHERE payload->>'command_id' = :id",
        id=reserve["command_id"],
    )
    assert outbox == [("command_rejected", "alerts")]


async def test_worker_clients_are_safe_for_a_command_log(stack: Settings) -> None:
    broker = make_broker(stack, client_id="safety-test")
    register(broker, stack, Runtime())
    await broker.start()
    try:
        assert unsafe_settings(broker) == []
    finally:
        await broker.stop()


async def test_the_safety_check_catches_auto_commit(stack: Settings) -> None:
    broker = make_broker(stack, client_id="unsafe-test")

    @broker.subscriber(STOCK_COMMANDS.name, group_id=f"unsafe-{uuid.uuid4()}", ack_policy=AckPolicy.ACK_FIRST)
    async def careless(body: bytes) -> None:
        return None

    await broker.start()
    try:
        problems = unsafe_settings(broker)
    finally:
        await broker.stop()
    assert any("auto-commit" in p for p in problems)
    assert any("auto_offset_reset" in p for p in problems)


async def test_one_batch_writes_details_and_stock_levels(engine: AsyncEngine) -> None:
    """Items whose details are untouched get only their stock columns written; an item whose details
    changed in the same batch gets its whole row, with the stock moves before and after the change."""
    from contracts.stock_commands import STOCK_COMMAND_ADAPTER
    from workers.pipeline.batch import apply_batch
    from workers.rules.alerts import AlertPolicy
    from workers.stock_worker.apply import StockSession

    moved, renamed = (f"H-{uuid.uuid4().hex[:8].upper()}" for _ in range(2))

    async def batch(*bodies: dict[str, Any]) -> None:
        commands = [STOCK_COMMAND_ADAPTER.validate_python(b) for b in bodies]
        report = await apply_batch(engine, StockSession(AlertPolicy()), commands, datetime.now(UTC))
        assert not report.rejected

    await batch(*(command(s, "register_item", name="Before", min_stock_level=3) for s in (moved, renamed)))
    await batch(
        command(moved, "receive_stock", quantity=10),
        command(renamed, "receive_stock", quantity=10),
        command(renamed, "update_item_details", name="After"),
        command(moved, "reserve_stock", reservation_id="r-1", quantity=8),
        command(renamed, "adjust_stock", delta=-9, reason_code="loss"),
    )
    rows = await fetch(
        engine,
        "SELECT sku, name, stock_quantity, reserved_quantity, alert_state, version FROM items"
        " WHERE sku IN (:a, :b) ORDER BY sku = :a DESC",
        a=moved,
        b=renamed,
    )
    assert rows == [(moved, "Before", 10, 8, "low", 3), (renamed, "After", 1, 0, "low", 4)]


def test_detail_fields_and_stock_levels_cover_every_item_field() -> None:
    from db.stock_repo import StockLevels
    from workers.rules.stock import ItemState
    from workers.stock_worker.apply import DETAIL_FIELDS

    stock = {"on_hand", "reserved", "alert_state", "version"}
    assert len(StockLevels._fields) == len(stock) + 1  # the sku, and the stock columns
    # `stock` (per location) is written to item_stock, compared entry by entry (StockSession.save).
    assert set(ItemState._fields) == set(DETAIL_FIELDS) | stock | {"stock"}


def test_the_batch_decoder_and_parser_run_on_the_event_loop() -> None:
    """FastStream runs a plain-def decoder or parser in a worker thread: a thread hop for every batch."""
    assert inspect.iscoroutinefunction(raw_batch)
    assert inspect.iscoroutinefunction(tolerant_batch_parser)


def test_an_item_row_and_its_state_agree_field_by_field() -> None:
    """state_from_row spells the fields out by position: every one must land on its namesake."""
    from decimal import Decimal

    from db.stock_repo import ItemRow
    from workers.stock_worker.apply import row_from_state, state_from_row

    row = ItemRow(
        "S-1", "Mug", "desc", "kitchen", 11, 3, 250, "1x2x3", Decimal("1.50"), 4, 90, False, True, "low", 7
    )
    state = state_from_row(row)
    assert row_from_state(state) == row
    renamed = {"stock_quantity": "on_hand", "reserved_quantity": "reserved"}
    for name, value in row._asdict().items():
        assert getattr(state, renamed.get(name, name)) == value, name
