"""The command contracts: what the stock command topic accepts and how it serialises."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, get_args

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts.common import Sku
from contracts.stock_commands import (
    STOCK_COMMAND_ADAPTER,
    AdjustStock,
    CountStock,
    DeactivateItem,
    ExpireReservation,
    FulfilReservation,
    ReactivateItem,
    ReceiveStock,
    RegisterItem,
    ReleaseReservation,
    ReserveStock,
    SetLocationLevels,
    StockCommand,
    TransferStock,
    UpdateItemDetails,
)
from contracts.stock_events import ItemRegistered

SKU_ADAPTER: TypeAdapter[str] = TypeAdapter(Sku)

ENVELOPE: dict[str, Any] = {
    "command_id": "6f1c2b9e-3d0a-4f5e-9b1a-2c3d4e5f6a7b",
    "sku": "ABC-123",
    "issued_at": "2026-11-27T09:30:00Z",
    "actor": "tester",
    "source": "unit",
}

# The smallest valid body of every command type (besides the envelope).
MINIMAL_BODIES: dict[type[BaseModel], dict[str, Any]] = {
    RegisterItem: {"name": "Blue mug"},
    UpdateItemDetails: {"min_stock_level": 3},
    DeactivateItem: {},
    ReactivateItem: {},
    ReceiveStock: {"quantity": 1},
    AdjustStock: {"delta": -1, "reason_code": "damage"},
    CountStock: {"counted_quantity": 0},
    ReserveStock: {"reservation_id": "order-1", "quantity": 1},
    ReleaseReservation: {"reservation_id": "order-1"},
    FulfilReservation: {"reservation_id": "order-1"},
    ExpireReservation: {"reservation_id": "order-1"},
    TransferStock: {"from_location": "WH-1", "to_location": "STORE-1", "quantity": 1},
    SetLocationLevels: {"location": "STORE-1"},
}


def union_members() -> tuple[type[BaseModel], ...]:
    """The model classes of the StockCommand union (Annotated[Union[...], Field(...)])."""
    union, *_metadata = get_args(StockCommand)
    members: tuple[type[BaseModel], ...] = get_args(union)
    return members


def type_of(cls: type[BaseModel]) -> str:
    default = cls.model_fields["type"].default
    assert isinstance(default, str)
    return default


def command(**fields: Any) -> StockCommand:
    return STOCK_COMMAND_ADAPTER.validate_python({**ENVELOPE, **fields})


def register(**fields: Any) -> RegisterItem:
    return RegisterItem.model_validate({**ENVELOPE, "name": "Blue mug", **fields})


def test_the_union_has_one_member_per_command_type() -> None:
    members = union_members()
    assert set(members) == set(MINIMAL_BODIES)
    assert len({type_of(cls) for cls in members}) == len(members)


# --- SKU -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("abc-123", "ABC-123"),
        ("  abc-123\t", "ABC-123"),
        ("\nA\n", "A"),
        ("x" * 64, "X" * 64),
        ("0-0", "0-0"),
    ],
)
def test_sku_is_stripped_and_upper_cased(raw: str, normalised: str) -> None:
    assert SKU_ADAPTER.validate_python(raw) == normalised
    assert command(type="receive_stock", quantity=1, sku=raw).sku == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "AB C",
        "-ABC",
        "ABC-",
        "-",
        "A" * 65,
        "<b>ABC</b>",
        "ABC>",
        "ABC_1",
        "ABC.1",
        "ÄBC",
    ],
)
def test_sku_outside_the_pattern_is_rejected(raw: str) -> None:
    with pytest.raises(ValidationError):
        SKU_ADAPTER.validate_python(raw)
    with pytest.raises(ValidationError, match="sku"):
        command(type="receive_stock", quantity=1, sku=raw)


def test_sku_must_be_a_string() -> None:
    with pytest.raises(ValidationError):
        SKU_ADAPTER.validate_python(123)


# --- plain text ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["<script>alert(1)</script>", "a < b", "b > a", ">", "<"])
@pytest.mark.parametrize(
    "fields",
    [
        {"type": "register_item", "name": "{text}"},
        {"type": "register_item", "name": "Mug", "description": "{text}"},
        {"type": "register_item", "name": "Mug", "category": "{text}"},
        {"type": "register_item", "name": "Mug", "dimensions": "{text}"},
        {"type": "update_item_details", "name": "{text}"},
        {"type": "adjust_stock", "delta": 1, "reason_code": "found", "note": "{text}"},
        {"type": "count_stock", "counted_quantity": 1, "note": "{text}"},
        {"type": "deactivate_item", "reason": "{text}"},
    ],
    ids=lambda f: f"{f['type']}.{next(k for k, v in f.items() if v == '{text}')}",
)
def test_markup_in_text_fields_is_rejected(text: str, fields: dict[str, Any]) -> None:
    filled = {k: text if v == "{text}" else v for k, v in fields.items()}
    with pytest.raises(ValidationError, match="markup"):
        command(**filled)


@pytest.mark.parametrize("text", ["nul\x00inside", "\x00", "bell\x07", "esc\x1b[0m", "del\x7f"])
@pytest.mark.parametrize("field", ["name", "description", "category", "dimensions"])
def test_control_characters_in_text_are_rejected(text: str, field: str) -> None:
    """PostgreSQL text cannot hold NUL: such a command would fail its batch on every retry."""
    fields = {"name": "Mug", field: text}
    with pytest.raises(ValidationError, match="control characters"):
        command(type="register_item", **fields)


@pytest.mark.parametrize("field", ["actor", "source"])
def test_control_characters_in_the_envelope_are_rejected(field: str) -> None:
    with pytest.raises(ValidationError, match="control characters"):
        command(type="register_item", name="Mug", **{field: "wms\x00"})


def test_plain_text_may_hold_tabs_and_line_breaks() -> None:
    assert register(name="Mug", description="line one\r\nline\ttwo").description == "line one\r\nline\ttwo"


def test_plain_text_without_markup_is_accepted() -> None:
    item = register(name="Mug & saucer, 20% off", description='2" high')
    assert item.name == "Mug & saucer, 20% off"


# --- money -----------------------------------------------------------------------------------------


def _floats(value: object) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats(v)]
    return []


def test_money_is_serialised_as_a_json_string() -> None:
    item = register(cost_price=Decimal("2.35"))
    dumped = item.model_dump_json()
    assert '"cost_price":"2.35"' in dumped
    parsed = json.loads(dumped)
    assert parsed["cost_price"] == "2.35"
    assert _floats(parsed) == []


def test_money_stays_a_decimal_in_python_and_round_trips_exactly() -> None:
    item = register(cost_price=Decimal("0.1000"))
    assert item.model_dump()["cost_price"] == Decimal("0.1000")
    again = RegisterItem.model_validate_json(item.model_dump_json())
    assert again.cost_price == Decimal("0.1")
    assert isinstance(again.cost_price, Decimal)


def test_money_in_events_is_serialised_as_a_string() -> None:
    event = ItemRegistered(
        event_id=uuid.uuid4(),
        sku="ABC-1",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        name="Mug",
        on_hand=0,
        min_stock_level=0,
        cost_price=Decimal("19.99"),
        version=1,
    )
    parsed = json.loads(event.model_dump_json())
    assert parsed["cost_price"] == "19.99"
    assert _floats(parsed) == []


@pytest.mark.parametrize("price", ["-0.01", "1.23456", "1" * 11 + ".0001"])
def test_money_out_of_range_is_rejected(price: str) -> None:
    with pytest.raises(ValidationError, match="cost_price"):
        register(cost_price=price)


# --- the discriminated union -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", list(MINIMAL_BODIES), ids=lambda c: c.__name__)
def test_the_union_picks_the_class_named_by_type(cls: type[BaseModel]) -> None:
    body = {**ENVELOPE, "type": type_of(cls), **MINIMAL_BODIES[cls]}
    assert type(STOCK_COMMAND_ADAPTER.validate_python(body)) is cls
    assert type(STOCK_COMMAND_ADAPTER.validate_json(json.dumps(body))) is cls


@pytest.mark.parametrize("cls", list(MINIMAL_BODIES), ids=lambda c: c.__name__)
def test_a_command_round_trips_through_json(cls: type[BaseModel]) -> None:
    parsed = STOCK_COMMAND_ADAPTER.validate_python({**ENVELOPE, "type": type_of(cls), **MINIMAL_BODIES[cls]})
    assert STOCK_COMMAND_ADAPTER.validate_json(parsed.model_dump_json()) == parsed


@pytest.mark.parametrize("bad_type", ["delete_item", "RECEIVE_STOCK", "", None])
def test_unknown_type_is_rejected(bad_type: str | None) -> None:
    with pytest.raises(ValidationError):
        command(type=bad_type, quantity=1)


def test_missing_type_is_rejected() -> None:
    with pytest.raises(ValidationError):
        command(quantity=1)


@pytest.mark.parametrize("cls", list(MINIMAL_BODIES), ids=lambda c: c.__name__)
def test_extra_fields_are_rejected(cls: type[BaseModel]) -> None:
    body = {**ENVELOPE, "type": type_of(cls), **MINIMAL_BODIES[cls], "colour": "blue"}
    with pytest.raises(ValidationError, match="colour"):
        STOCK_COMMAND_ADAPTER.validate_python(body)


def test_a_field_of_another_command_type_is_rejected() -> None:
    with pytest.raises(ValidationError, match="counted_quantity"):
        command(type="receive_stock", quantity=1, counted_quantity=1)


# --- envelope --------------------------------------------------------------------------------------


@pytest.mark.parametrize("issued_at", ["2026-11-27T09:30:00", datetime(2026, 11, 27, 9, 30)])
def test_timezone_naive_issued_at_is_rejected(issued_at: object) -> None:
    with pytest.raises(ValidationError, match="issued_at"):
        command(type="receive_stock", quantity=1, issued_at=issued_at)


def test_timezone_aware_issued_at_is_accepted() -> None:
    parsed = command(type="receive_stock", quantity=1, issued_at="2026-11-27T10:30:00+01:00")
    assert parsed.issued_at == datetime(2026, 11, 27, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "override",
    [
        {"command_id": "not-a-uuid"},
        {"actor": ""},
        {"source": ""},
        {"schema_version": 2},
        {"expected_version": -1},
    ],
)
def test_invalid_envelope_fields_are_rejected(override: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        command(type="receive_stock", quantity=1, **override)


def test_commands_are_immutable() -> None:
    parsed = command(type="receive_stock", quantity=1)
    with pytest.raises(ValidationError):
        parsed.sku = "OTHER"  # type: ignore[misc]


# --- per-command rules -----------------------------------------------------------------------------


def test_update_with_no_field_is_rejected() -> None:
    with pytest.raises(ValidationError, match="at least one field"):
        command(type="update_item_details")


@pytest.mark.parametrize("field", ["name", "min_stock_level", "is_trackable"])
def test_update_with_explicit_null_of_a_required_field_is_rejected(field: str) -> None:
    with pytest.raises(ValidationError, match=f"{field} cannot be cleared"):
        command(type="update_item_details", **{field: None})


def test_update_with_explicit_null_of_an_optional_field_clears_it() -> None:
    parsed = command(type="update_item_details", description=None, max_stock_level=None)
    assert isinstance(parsed, UpdateItemDetails)
    assert parsed.changes() == {"description": None, "max_stock_level": None}


def test_update_changes_holds_only_the_fields_sent() -> None:
    parsed = command(type="update_item_details", min_stock_level=4, cost_price="1.50")
    assert isinstance(parsed, UpdateItemDetails)
    assert parsed.changes() == {"min_stock_level": 4, "cost_price": Decimal("1.50")}


def test_adjust_by_zero_is_rejected() -> None:
    with pytest.raises(ValidationError, match="delta must not be zero"):
        command(type="adjust_stock", delta=0, reason_code="correction")


def test_adjust_with_unknown_reason_code_is_rejected() -> None:
    with pytest.raises(ValidationError, match="reason_code"):
        command(type="adjust_stock", delta=1, reason_code="because")


def test_register_with_max_below_min_is_rejected() -> None:
    with pytest.raises(ValidationError, match="max_stock_level must not be below min_stock_level"):
        register(min_stock_level=5, max_stock_level=4)


def test_register_with_max_equal_to_min_is_accepted() -> None:
    assert register(min_stock_level=5, max_stock_level=5).max_stock_level == 5


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "receive_stock", "quantity": 0},
        {"type": "receive_stock", "quantity": -1},
        {"type": "reserve_stock", "reservation_id": "r", "quantity": 0},
        {"type": "reserve_stock", "reservation_id": "-r", "quantity": 1},
        {"type": "reserve_stock", "reservation_id": "", "quantity": 1},
        {"type": "reserve_stock", "reservation_id": "r", "quantity": 1, "expires_at": "2026-12-01T00:00:00"},
        {"type": "count_stock", "counted_quantity": -1},
        {"type": "register_item", "name": ""},
        {"type": "register_item", "name": "Mug", "initial_quantity": -1},
    ],
)
def test_out_of_range_command_fields_are_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        command(**fields)


# --- schema examples -------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", union_members(), ids=lambda c: c.__name__)
def test_every_schema_example_validates_against_the_union(cls: type[BaseModel]) -> None:
    examples = cls.model_json_schema().get("examples")
    assert isinstance(examples, list)
    assert examples, f"{cls.__name__} has no json_schema example"
    for example in examples:
        parsed = STOCK_COMMAND_ADAPTER.validate_python(example)
        assert type(parsed) is cls
        assert type(STOCK_COMMAND_ADAPTER.validate_json(json.dumps(example))) is cls
