"""Every command survives the wire unchanged: what the edge validated is what the worker sees."""

from __future__ import annotations

import typing
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from contracts.stock_commands import STOCK_COMMAND_ADAPTER, StockCommand, UpdateItemDetails

ENVELOPE = {
    "command_id": uuid.uuid4(),
    "sku": "RT-1",
    "issued_at": datetime(2026, 11, 27, tzinfo=UTC),
    "actor": "tester",
    "source": "unit",
}
FIELDS: dict[str, dict[str, Any]] = {
    "register_item": {
        "name": "Mug",
        "cost_price": Decimal("2.3500"),
        "max_stock_level": 9,
        "min_stock_level": 2,
    },
    "update_item_details": {"category": None, "cost_price": Decimal("1.10")},
    "deactivate_item": {"reason": "gone"},
    "reactivate_item": {},
    "receive_stock": {"quantity": 3, "location": "WH-1"},
    "adjust_stock": {"delta": -1, "reason_code": "damage", "note": "dropped"},
    "count_stock": {"counted_quantity": 0},
    "reserve_stock": {"reservation_id": "o-1", "quantity": 2, "expires_at": datetime.now(UTC) + timedelta(1)},
    "release_reservation": {"reservation_id": "o-1"},
    "fulfil_reservation": {"reservation_id": "o-1"},
    "expire_reservation": {"reservation_id": "o-1"},
    "transfer_stock": {"from_location": "WH-1", "to_location": "store.2", "quantity": 4, "note": "restock"},
    "set_location_levels": {"location": "store.2", "min_stock_level": 1, "max_stock_level": None},
}
MEMBERS = typing.get_args(typing.get_args(StockCommand)[0])


def test_every_command_type_is_covered() -> None:
    assert {m.model_fields["type"].default for m in MEMBERS} == set(FIELDS)


@pytest.mark.parametrize("kind", MEMBERS, ids=lambda m: m.__name__)
def test_round_trip(kind: type[Any]) -> None:
    command = kind(**ENVELOPE, **FIELDS[kind.model_fields["type"].default])
    again = STOCK_COMMAND_ADAPTER.validate_json(command.model_dump_json())
    assert again == command
    assert (
        again.model_fields_set == command.model_fields_set | {"type"}
        or again.model_dump() == command.model_dump()
    )


def test_update_keeps_omitted_apart_from_cleared() -> None:
    command = UpdateItemDetails(**ENVELOPE, category=None)
    wire = command.model_dump(mode="json")
    assert wire["category"] is None
    assert "name" not in wire
    assert "description" not in wire
    again = STOCK_COMMAND_ADAPTER.validate_json(command.model_dump_json())
    assert isinstance(again, UpdateItemDetails)
    assert again.changes() == {"category": None}


def test_events_built_without_validation_are_valid() -> None:
    """The stock rules build events with model_construct; every one must pass the contract all the same."""
    from contracts.stock_commands import AdjustStock, RegisterItem, ReserveStock
    from contracts.stock_events import STOCK_EVENT_ADAPTER
    from workers.rules.stock import Applied, decide

    now = datetime(2026, 11, 27, tzinfo=UTC)
    state = None
    events = []
    for command in (
        RegisterItem(
            **{**ENVELOPE, "command_id": uuid.uuid4()}, name="Mug", initial_quantity=3, min_stock_level=2
        ),
        ReserveStock(**{**ENVELOPE, "command_id": uuid.uuid4()}, reservation_id="r", quantity=2),
        AdjustStock(**{**ENVELOPE, "command_id": uuid.uuid4()}, delta=-1, reason_code="loss"),
    ):
        outcome = decide(state, None, command, now)
        assert isinstance(outcome, Applied)
        state = outcome.state
        events.extend(outcome.events)
    assert {e.type for e in events} >= {
        "item_registered",
        "stock_changed",
        "reservation_made",
        "out_of_stock",
    }
    for event in events:
        assert STOCK_EVENT_ADAPTER.validate_json(event.model_dump_json()) == event
        assert event.payload_json() == event.model_dump_json()  # the outbox's text, byte for byte


def test_trusted_events_equal_model_construct() -> None:
    """`EventEnvelope.trusted` is model_construct from a template: same fields, order, defaults and set."""
    from contracts.stock_events import LowStockDetected, ReservationMade, StockChanged

    now = datetime(2026, 11, 27, tzinfo=UTC)
    base = {"event_id": uuid.uuid4(), "sku": "ABC-1", "occurred_at": now, "command_id": uuid.uuid4()}
    cases: list[tuple[Any, dict[str, Any]]] = [
        (StockChanged, {"delta": 2, "reason": "receive_stock", "on_hand": 5, "reserved": 0, "available": 5,
                        "version": 2}),
        (ReservationMade, {"reservation_id": "r-1", "quantity": 1}),
        (LowStockDetected, {"previous": "ok", "current": "low", "available": 1, "min_stock_level": 2,
                            "max_stock_level": None}),
    ]  # fmt: skip
    for kind, fields in cases:
        fast, slow = kind.trusted(**base, **fields), kind.model_construct(**base, **fields)
        assert fast == slow
        assert fast.model_dump_json() == slow.model_dump_json()
        assert fast.model_fields_set == slow.model_fields_set
        assert fast.payload_json() == slow.model_dump_json()
    for _ in range(2):  # names refused once are refused again: only names that passed are remembered
        with pytest.raises(TypeError):
            StockChanged.trusted(**base, delta=1)  # required fields missing
        with pytest.raises(TypeError):
            ReservationMade.trusted(**base, reservation_id="r", quantity=1, colour="red")
