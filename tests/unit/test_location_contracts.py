"""Locations in the contracts: v1 records without a location still validate (and mean 'default'); codes,
transfers and levels are checked at the contract."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from contracts.common import DEFAULT_LOCATION, LocationCode
from contracts.locations import CreateLocation, UpdateLocation
from contracts.stock_commands import STOCK_COMMAND_ADAPTER, SetLocationLevels, TransferStock
from contracts.stock_events import (
    STOCK_EVENT_ADAPTER,
    LowStockDetected,
    ReservationMade,
    StockChanged,
)
from tests.unit.test_contracts import ENVELOPE

CODE: TypeAdapter[str] = TypeAdapter(LocationCode)
# Records as producers wrote them before locations existed (schema_version 1, no location field).
V1_RECORDS = [
    {"type": "register_item", "name": "Mug", "initial_quantity": 5},
    {"type": "receive_stock", "quantity": 3},
    {"type": "adjust_stock", "delta": -1, "reason_code": "damage"},
    {"type": "count_stock", "counted_quantity": 4},
    {"type": "reserve_stock", "reservation_id": "o-1", "quantity": 1},
]


@pytest.mark.parametrize("record", V1_RECORDS, ids=lambda r: r["type"])
def test_v1_records_without_location_validate_at_no_location(record: dict[str, Any]) -> None:
    command = STOCK_COMMAND_ADAPTER.validate_python({**ENVELOPE, **record})
    assert command.schema_version == 1
    assert getattr(command, "location", "no such field") is None


@pytest.mark.parametrize("record", V1_RECORDS, ids=lambda r: r["type"])
def test_stock_commands_carry_a_location(record: dict[str, Any]) -> None:
    command = STOCK_COMMAND_ADAPTER.validate_json(
        STOCK_COMMAND_ADAPTER.dump_json(
            STOCK_COMMAND_ADAPTER.validate_python({**ENVELOPE, **record, "location": "WH-EU-1"})
        )
    )
    assert command.model_dump()["location"] == "WH-EU-1"


@pytest.mark.parametrize("code", ["default", "WH-EU-1", "store.berlin_2", "0", "a" * 40])
def test_location_codes(code: str) -> None:
    assert CODE.validate_python(code) == code


@pytest.mark.parametrize("code", ["", "-WH", ".x", "WH EU", "WH/1", "a" * 41, "Lager-Ä", "<b>"])
def test_bad_location_codes_are_refused(code: str) -> None:
    with pytest.raises(ValidationError):
        CODE.validate_python(code)
    with pytest.raises(ValidationError):
        STOCK_COMMAND_ADAPTER.validate_python(
            {**ENVELOPE, "type": "receive_stock", "quantity": 1, "location": code}
        )


def test_transfer_needs_two_places_and_a_positive_quantity() -> None:
    transfer = {**ENVELOPE, "type": "transfer_stock", "from_location": "A", "to_location": "B"}
    assert isinstance(STOCK_COMMAND_ADAPTER.validate_python({**transfer, "quantity": 2}), TransferStock)
    for bad in ({"quantity": 0}, {"quantity": -1}, {"quantity": 1, "to_location": "A"}, {"quantity": True}):
        with pytest.raises(ValidationError):
            STOCK_COMMAND_ADAPTER.validate_python({**transfer, **bad})


def test_location_levels() -> None:
    levels = {**ENVELOPE, "type": "set_location_levels", "location": "B"}
    cleared = STOCK_COMMAND_ADAPTER.validate_python(levels)
    assert isinstance(cleared, SetLocationLevels)
    assert (cleared.min_stock_level, cleared.max_stock_level) == (None, None)
    with pytest.raises(ValidationError, match="max_stock_level"):
        STOCK_COMMAND_ADAPTER.validate_python({**levels, "min_stock_level": 5, "max_stock_level": 4})
    with pytest.raises(ValidationError):
        STOCK_COMMAND_ADAPTER.validate_python({**ENVELOPE, "type": "set_location_levels"})


def test_events_written_before_locations_still_read() -> None:
    base = {
        "event_id": "6f1c2b9e-3d0a-4f5e-9b1a-2c3d4e5f6a7b",
        "sku": "ABC-123",
        "occurred_at": "2026-11-27T09:30:00Z",
    }
    changed = STOCK_EVENT_ADAPTER.validate_python(
        {
            **base,
            **{"type": "stock_changed", "delta": 1, "reason": "receive_stock", "version": 2},
            **{"on_hand": 1, "reserved": 0, "available": 1},
        }
    )
    assert isinstance(changed, StockChanged)
    assert (changed.location, changed.location_on_hand) == (DEFAULT_LOCATION, None)
    made = STOCK_EVENT_ADAPTER.validate_python(
        {**base, "type": "reservation_made", "reservation_id": "o-1", "quantity": 1}
    )
    assert isinstance(made, ReservationMade)
    assert made.location == DEFAULT_LOCATION
    low = STOCK_EVENT_ADAPTER.validate_python(
        {
            **base,
            **{"type": "low_stock_detected", "previous": "ok", "current": "low", "available": 1},
            **{"min_stock_level": 2, "max_stock_level": None},
        }
    )
    assert isinstance(low, LowStockDetected)
    assert low.location is None


def test_location_admin_bodies() -> None:
    assert CreateLocation(code="WH-EU-1", name="Berlin DC", kind="warehouse").kind == "warehouse"
    with pytest.raises(ValidationError):
        CreateLocation.model_validate({"code": "WH-EU-1", "name": "x", "kind": "shed"})
    with pytest.raises(ValidationError, match="at least one"):
        UpdateLocation()
    assert UpdateLocation(is_active=False).is_active is False


@pytest.mark.parametrize("record", V1_RECORDS, ids=lambda r: r["type"])
def test_a_command_without_location_goes_on_the_wire_as_v1(record: dict[str, Any]) -> None:
    """Workers that predate locations forbid unknown fields: an upgraded edge must not send them one."""
    command = STOCK_COMMAND_ADAPTER.validate_python({**ENVELOPE, **record})
    wire = json.loads(STOCK_COMMAND_ADAPTER.dump_json(command))
    assert "location" not in wire
    assert wire == json.loads(command.model_dump_json())
