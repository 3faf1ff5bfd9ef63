"""bench.floor finds the real worker's transactions again in their rows, to replay them as they were."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from bench.floor import group_batches

T0 = datetime(2026, 12, 8, tzinfo=UTC)
T1 = T0 + timedelta(milliseconds=3)
REGISTERED = T0 - timedelta(seconds=1)


def _processed(command_id: uuid.UUID, sku: str, at: datetime) -> tuple[object, ...]:
    return (command_id, "receive_stock", sku, "applied", None, at, "bench", at)


def _ledger(command_id: uuid.UUID, sku: str, at: datetime, location: str = "default") -> tuple[object, ...]:
    return (command_id, sku, 1, 0, "receipt", "bench", 1, 0, at, location)


def test_rows_go_with_the_transaction_that_wrote_them() -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    processed = [_processed(c, "S2", T1), _processed(a, "S1", T0), _processed(b, "S2", T0)]
    ledger = [
        _ledger(a, "S1", T0),
        _ledger(b, "S2", T0, "shop"),
        _ledger(c, "S2", T1),
        _ledger(uuid.uuid4(), "S9", REGISTERED),  # a registration: not replayed
    ]
    outbox = [(uuid.uuid4(), "stock_changed", "inventory", "S1", "{}", T0)]
    outbox += [(uuid.uuid4(), "item_registered", "inventory", "S9", "{}", REGISTERED)]
    reservations = [("r1", "S2", 1, "active", None, c, "default"), ("r0", "S9", 1, "active", None, None, "x")]
    items = {sku: (sku, 1, 0, "ok", 2) for sku in ("S1", "S2", "S9")}
    stock = {(s, loc): (s, loc, 1, 0, "ok") for s in ("S1", "S2") for loc in ("default", "shop")}

    first, second = group_batches(processed, ledger, outbox, reservations, items, stock)

    assert [r[0] for r in first.processed] == [a, b]
    assert [r[0] for r in first.ledger] == [a, b]
    assert len(first.outbox) == 1
    assert not first.reservations
    assert [r[0] for r in first.items] == ["S1", "S2"]
    assert [(r[0], r[1]) for r in first.stock] == [("S1", "default"), ("S2", "shop")]
    assert [r[0] for r in second.processed] == [c]
    assert [r[0] for r in second.reservations] == ["r1"]
    assert [r[0] for r in second.items] == ["S2"]
    assert not second.outbox
