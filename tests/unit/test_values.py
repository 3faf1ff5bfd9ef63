"""Hostile values in the contracts: text, money, counts and instants are refused with a validation error
(a 422 at the edge, a DLQ reason in the worker), never passed on to fail later."""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from contracts.common import (
    EARLIEST,
    LATEST,
    MONEY_PATTERN,
    Instant,
    Money,
    MultiLineText,
    PlainText,
)
from contracts.live import Subscribe
from contracts.notifications import ReplaySince, SubscriptionCreate, SubscriptionUpdate
from contracts.price_commands import PRICE_COMMAND_ADAPTER
from contracts.stock_commands import STOCK_COMMAND_ADAPTER
from workers.intake import decode

ENVELOPE: dict[str, Any] = {
    "command_id": "6f1c2b9e-3d0a-4f5e-9b1a-2c3d4e5f6a7b",
    "sku": "ABC-123",
    "issued_at": "2026-11-27T09:30:00Z",
    "actor": "tester",
    "source": "unit",
}
REGISTER = {**ENVELOPE, "type": "register_item", "name": "Mug"}
SET_PRICE = {**ENVELOPE, "type": "set_price", "currency": "EUR", "selling_price": "12.90"}
CHANNEL = {"kind": "webhook", "url": "https://hooks.example.com/x"}

SINGLE_LINE: TypeAdapter[str] = TypeAdapter(PlainText)
MULTI_LINE: TypeAdapter[str] = TypeAdapter(MultiLineText)
MONEY: TypeAdapter[Decimal] = TypeAdapter(Money)
INSTANT: TypeAdapter[datetime] = TypeAdapter(Instant)

# Every free-text field of the contracts, with a valid body around it.
SINGLE_LINE_FIELDS: list[tuple[TypeAdapter[Any] | type[BaseModel], dict[str, Any], str]] = [
    (STOCK_COMMAND_ADAPTER, REGISTER, "name"),
    (STOCK_COMMAND_ADAPTER, REGISTER, "category"),
    (STOCK_COMMAND_ADAPTER, REGISTER, "dimensions"),
    (STOCK_COMMAND_ADAPTER, REGISTER, "actor"),
    (STOCK_COMMAND_ADAPTER, REGISTER, "source"),
    (STOCK_COMMAND_ADAPTER, {**ENVELOPE, "type": "update_item_details"}, "name"),
    (STOCK_COMMAND_ADAPTER, {**ENVELOPE, "type": "update_item_details"}, "category"),
    (STOCK_COMMAND_ADAPTER, {**ENVELOPE, "type": "deactivate_item"}, "reason"),
    (STOCK_COMMAND_ADAPTER, {**ENVELOPE, "type": "reactivate_item"}, "reason"),
    (PRICE_COMMAND_ADAPTER, SET_PRICE, "reason"),
    (SubscriptionCreate, {"channel": CHANNEL}, "name"),
    (SubscriptionUpdate, {}, "name"),
]
MULTI_LINE_FIELDS: list[tuple[TypeAdapter[Any] | type[BaseModel], dict[str, Any], str]] = [
    (STOCK_COMMAND_ADAPTER, REGISTER, "description"),
    (STOCK_COMMAND_ADAPTER, {**ENVELOPE, "type": "adjust_stock", "delta": 1, "reason_code": "found"}, "note"),
    (STOCK_COMMAND_ADAPTER, {**ENVELOPE, "type": "count_stock", "counted_quantity": 1}, "note"),
    (PRICE_COMMAND_ADAPTER, SET_PRICE, "notes"),
    (
        PRICE_COMMAND_ADAPTER,
        {**ENVELOPE, "type": "reject_price_change", "change_id": str(uuid.uuid4())},
        "comment",
    ),
]


def validate(target: TypeAdapter[Any] | type[BaseModel], body: dict[str, Any]) -> object:
    if isinstance(target, TypeAdapter):
        return target.validate_python(body)
    return target.model_validate(body)


def field_id(case: tuple[Any, dict[str, Any], str]) -> str:
    _, body, field = case
    return f"{body.get('type', 'subscription')}.{field}"


# --- text --------------------------------------------------------------------------------------------------

CONTROL = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]
LINE_BREAKS = ["\t", "\n", "\r", "\r\n", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("case", SINGLE_LINE_FIELDS, ids=field_id)
@pytest.mark.parametrize(
    "text", ["a\nb", "a\rb", "a\tb", "Subject\r\nBcc: x@example.com", "a\u2028b", "a\x85b"]
)
def test_single_line_fields_refuse_line_breaks(case: tuple[Any, dict[str, Any], str], text: str) -> None:
    target, body, field = case
    with pytest.raises(ValidationError, match="one line"):
        validate(target, {**body, field: text})


@pytest.mark.parametrize("case", SINGLE_LINE_FIELDS + MULTI_LINE_FIELDS, ids=field_id)
@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "x\udc80"])
def test_every_text_field_refuses_unencodable_text(case: tuple[Any, dict[str, Any], str], text: str) -> None:
    target, body, field = case
    with pytest.raises(ValidationError, match=r"valid Unicode|unicode string"):
        validate(target, {**body, field: text})


@pytest.mark.parametrize("case", MULTI_LINE_FIELDS, ids=field_id)
def test_multi_line_fields_keep_line_breaks_but_refuse_other_controls(
    case: tuple[Any, dict[str, Any], str],
) -> None:
    target, body, field = case
    assert getattr(validate(target, {**body, field: "one\r\ntwo\tthree"}), field) == "one\r\ntwo\tthree"
    for text in ("nul\x00", "esc\x1b[0m", "csi\x9b", "del\x7f"):
        with pytest.raises(ValidationError, match="control characters"):
            validate(target, {**body, field: text})


def test_the_live_category_filter_is_one_line() -> None:
    frame = {"type": "subscribe", "channel": "inventory", "filter": {"category": "lamps\r\nx"}}
    with pytest.raises(ValidationError, match="one line"):
        Subscribe.model_validate(frame)


@given(st.sampled_from(CONTROL + LINE_BREAKS), st.text(max_size=5), st.text(max_size=5))
def test_no_control_character_passes_a_single_line_field(control: str, before: str, after: str) -> None:
    with pytest.raises(ValidationError):
        SINGLE_LINE.validate_python(before + control + after)


@given(st.text())
def test_the_schema_patterns_say_what_the_validators_do(text: str) -> None:
    """The OpenAPI pattern (what clients and Schemathesis read) agrees with the check (what is enforced)."""
    for adapter in (SINGLE_LINE, MULTI_LINE):
        pattern = adapter.json_schema()["pattern"]
        try:
            adapter.validate_python(text)
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted == (re.fullmatch(pattern, text) is not None), (pattern, text)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1))
def test_printable_text_without_markup_passes(text: str) -> None:
    if "<" in text or ">" in text:
        return
    assert SINGLE_LINE.validate_python(text) == text
    assert all(unicodedata.category(c) != "Cc" for c in text)


# --- money -------------------------------------------------------------------------------------------------

REFUSED_MONEY: list[Any] = [
    "1e3", "1E3", "1.5e2", "1_000", "1_000.00", "\u0661\u0662", "\u0661\u0662.\u0665\u0660", "\uff11\uff12",
    " 12", "12 ", " 12.50 ", "\t12", "12\n", "+12", "-0", "12.", ".5", "0x10", "Infinity", "NaN", "12,50", "",
    True, False, 12, 0, 12.0, 12.5, None,
]  # fmt: skip


@pytest.mark.parametrize("value", REFUSED_MONEY, ids=repr)
def test_money_refuses_everything_but_the_documented_decimal_string(value: Any) -> None:
    with pytest.raises(ValidationError):
        MONEY.validate_python(value)
    with pytest.raises(ValidationError):
        MONEY.validate_json(json.dumps(value))
    with pytest.raises(ValidationError, match="selling_price"):
        PRICE_COMMAND_ADAPTER.validate_json(json.dumps({**SET_PRICE, "selling_price": value}))


@given(st.from_regex(MONEY_PATTERN, fullmatch=True))
def test_every_string_of_the_documented_pattern_is_money(text: str) -> None:
    if not text.isascii() or text.endswith("\n"):  # from_regex reads \d and $ the Python way
        return
    assert MONEY.validate_json(json.dumps(text)) == Decimal(text)


@given(st.text(max_size=20))
def test_money_strings_outside_the_pattern_are_refused(text: str) -> None:
    if re.fullmatch(r"[0-9]{1,10}(\.[0-9]{1,4})?", text):
        return
    with pytest.raises(ValidationError):
        MONEY.validate_python(text)


def test_money_is_written_without_an_exponent() -> None:
    assert MONEY.dump_json(Decimal("1E+3")) == b'"1000"'
    assert MONEY.validate_json(MONEY.dump_json(Decimal("1E+3"))) == Decimal(1000)


# --- counts ------------------------------------------------------------------------------------------------

REFUSED_COUNTS: list[Any] = [True, False, "12", " 12 ", "1_000", "\u0661\u0662", 12.0, 1e3, "1e3", None]
COUNT_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({**ENVELOPE, "type": "receive_stock"}, "quantity"),
    ({**ENVELOPE, "type": "adjust_stock", "reason_code": "found"}, "delta"),
    ({**ENVELOPE, "type": "count_stock"}, "counted_quantity"),
    ({**ENVELOPE, "type": "reserve_stock", "reservation_id": "o-1"}, "quantity"),
    (REGISTER, "initial_quantity"),
    (REGISTER, "min_stock_level"),
    (REGISTER, "weight_grams"),
    ({**ENVELOPE, "type": "receive_stock", "quantity": 1}, "expected_version"),
    ({**ENVELOPE, "type": "receive_stock", "quantity": 1}, "schema_version"),
]


@pytest.mark.parametrize("case", COUNT_FIELDS, ids=lambda c: f"{c[0]['type']}.{c[1]}")
@pytest.mark.parametrize("value", REFUSED_COUNTS, ids=repr)
def test_counts_are_json_integers_only(case: tuple[dict[str, Any], str], value: Any) -> None:
    body, field = case
    if value is None and field in ("weight_grams", "expected_version"):
        return  # optional: null means "none"
    with pytest.raises(ValidationError, match=field):
        STOCK_COMMAND_ADAPTER.validate_python({**body, field: value})
    with pytest.raises(ValidationError, match=field):
        STOCK_COMMAND_ADAPTER.validate_json(json.dumps({**body, field: value}))


def test_a_json_exponent_is_not_a_count() -> None:
    body = json.dumps({**ENVELOPE, "type": "receive_stock", "quantity": 1}).replace(
        '"quantity": 1', '"quantity": 1e1'
    )
    with pytest.raises(ValidationError, match="quantity"):
        STOCK_COMMAND_ADAPTER.validate_json(body)
    assert STOCK_COMMAND_ADAPTER.validate_json(body.replace("1e1", "10")).quantity == 10  # type: ignore[union-attr]


# --- instants ----------------------------------------------------------------------------------------------

OUT_OF_RANGE = [
    "9999-12-31T23:59:59.999999-23:59",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59.999999-00:01",
    "0001-01-01T00:00:00+00:01",
    "0001-01-01T00:00:00+23:59",
]
INSTANT_FIELDS: list[tuple[TypeAdapter[Any] | type[BaseModel], dict[str, Any], str]] = [
    (STOCK_COMMAND_ADAPTER, REGISTER, "issued_at"),
    (
        STOCK_COMMAND_ADAPTER,
        {**ENVELOPE, "type": "reserve_stock", "reservation_id": "o-1", "quantity": 1},
        "expires_at",
    ),
    (PRICE_COMMAND_ADAPTER, SET_PRICE, "effective_from"),
    (PRICE_COMMAND_ADAPTER, SET_PRICE, "effective_until"),
    (
        PRICE_COMMAND_ADAPTER,
        {**ENVELOPE, "type": "approve_price_change", "change_id": str(uuid.uuid4())},
        "issued_at",
    ),
    (ReplaySince, {}, "since"),
]


@pytest.mark.parametrize("case", INSTANT_FIELDS, ids=lambda c: f"{c[1].get('type', 'replay')}.{c[2]}")
@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_instants_outside_what_postgresql_and_python_hold_are_refused(
    case: tuple[Any, dict[str, Any], str], text: str
) -> None:
    target, body, field = case
    with pytest.raises(ValidationError, match=field):
        validate(target, {**body, field: text})


@pytest.mark.parametrize(
    "text", ["9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00-23:59"]
)
def test_the_extreme_instants_are_accepted(text: str) -> None:
    assert INSTANT.validate_json(json.dumps(text)) == datetime.fromisoformat(text)


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999)),
    st.integers(-(24 * 60 - 1), 24 * 60 - 1),
)
def test_an_instant_is_accepted_exactly_when_it_converts_to_utc(local: datetime, offset_min: int) -> None:
    value = local.replace(tzinfo=timezone(timedelta(minutes=offset_min)))
    try:
        value.astimezone(UTC)
        representable = True
    except OverflowError:
        representable = False
    try:
        INSTANT.validate_json(json.dumps(value.isoformat()))
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == representable
    assert accepted == (EARLIEST <= value <= LATEST if representable else False)


class _Record:
    def __init__(self, value: bytes, key: bytes) -> None:
        self.topic, self.partition, self.offset = "stock.commands", 0, 7
        self.key, self.value = key, value
        self.headers: list[tuple[str, bytes]] = []


@pytest.mark.parametrize("text", OUT_OF_RANGE)
def test_the_worker_dead_letters_an_instant_postgresql_cannot_hold(text: str) -> None:
    record = _Record(json.dumps({**REGISTER, "issued_at": text}).encode(), b"ABC-123")
    decoded = decode([record], STOCK_COMMAND_ADAPTER)
    assert decoded.valid == []
    [invalid] = decoded.invalid
    assert invalid.reason.startswith("invalid command: register_item.issued_at: Input should be")
    assert "9999-12-31T23:59:59.999999Z" in invalid.reason or "0001-01-01T00:00:00Z" in invalid.reason


@pytest.mark.parametrize(
    ("raw_name", "reason"),
    [(r"\ud800", "Invalid JSON"), (r"Mug\r\nBcc: x@example.com", "one line"), (r"Mug\u2028", "one line")],
)
def test_the_worker_dead_letters_hostile_text_with_its_reason(raw_name: str, reason: str) -> None:
    value = json.dumps({**REGISTER, "name": "@@"}).replace("@@", raw_name).encode()
    decoded = decode([_Record(value, b"ABC-123")], STOCK_COMMAND_ADAPTER)
    assert decoded.valid == []
    [invalid] = decoded.invalid
    assert invalid.reason.startswith("invalid command:")
    assert reason in invalid.reason
