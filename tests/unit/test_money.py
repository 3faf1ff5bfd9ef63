"""Money arithmetic (contracts.money) against an independent computation with exact fractions.

Percentages are rounded half-up to 0.01 in Decimal's sense (ROUND_HALF_UP: ties go away from zero, so a
negative margin of -12.345 becomes -12.35); the oracle below does the same on exact `Fraction`s.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from contracts.common import Money
from contracts.money import MINOR_UNITS, Currency, margin_pct, markup_pct, round_to_currency

MAX_MONEY = Decimal("9999999999.9999")  # Money: at most 14 digits, 4 after the point
HALF_CENT = Fraction(1, 200)  # half of the 0.01 percentage quantum

MONEY = TypeAdapter(Money)
CURRENCY = TypeAdapter(Currency)


def amounts(min_value: Decimal = Decimal(0)) -> st.SearchStrategy[Decimal]:
    """Decimals with 4 places over the whole Money range, small values well represented."""
    return st.one_of(
        st.decimals(min_value=min_value, max_value=Decimal(1000), places=4),
        st.decimals(min_value=min_value, max_value=MAX_MONEY, places=4),
    )


def half_up(value: Fraction, places: int) -> Fraction:
    """Round to `places` decimals, ties away from zero."""
    scale = 10**places
    magnitude = Fraction(math.floor(abs(value) * scale + Fraction(1, 2)), scale)
    return magnitude if value >= 0 else -magnitude


def exact_margin(selling: Decimal, cost: Decimal) -> Fraction:
    return (Fraction(selling) - Fraction(cost)) / Fraction(selling) * 100


def exact_markup(selling: Decimal, cost: Decimal) -> Fraction:
    return (Fraction(selling) - Fraction(cost)) / Fraction(cost) * 100


def is_quantized_to_cents(value: Decimal) -> bool:
    return value.as_tuple().exponent == -2


# --- margin and markup ---------------------------------------------------------------------------------


@given(selling=amounts(Decimal("0.0001")), cost=amounts())
@example(selling=Decimal("10.005"), cost=Decimal(6))  # 40.03 (exactly 40.0299...)
@example(selling=Decimal(8), cost=Decimal("9.0076"))  # a tie on the negative side: -12.595 -> -12.60
def test_margin_is_selling_minus_cost_over_selling_rounded_half_up(selling: Decimal, cost: Decimal) -> None:
    margin = margin_pct(selling, cost)
    assert margin is not None
    assert is_quantized_to_cents(margin)
    assert Fraction(margin) == half_up(exact_margin(selling, cost), 2)


@given(selling=amounts(), cost=amounts(Decimal("0.0001")))
@example(selling=Decimal("11.00"), cost=Decimal(6))  # 83.33
@example(selling=Decimal("1.00005"), cost=Decimal(1))  # a tie: 0.005 -> 0.01
def test_markup_is_selling_minus_cost_over_cost_rounded_half_up(selling: Decimal, cost: Decimal) -> None:
    markup = markup_pct(selling, cost)
    assert markup is not None
    assert is_quantized_to_cents(markup)
    assert Fraction(markup) == half_up(exact_markup(selling, cost), 2)


def test_rounding_examples() -> None:
    assert margin_pct(Decimal("10.00"), Decimal("6.00")) == Decimal("40.00")
    assert margin_pct(Decimal(3), Decimal(2)) == Decimal("33.33")
    assert margin_pct(Decimal(3), Decimal(1)) == Decimal("66.67")
    assert margin_pct(Decimal(8), Decimal("9.0076")) == Decimal("-12.60")
    assert markup_pct(Decimal(3), Decimal(2)) == Decimal("50.00")
    assert markup_pct(Decimal(1), Decimal(3)) == Decimal("-66.67")
    assert markup_pct(Decimal("1.00005"), Decimal(1)) == Decimal("0.01")


@given(selling=amounts(Decimal("0.0001")), cost=amounts())
def test_margin_is_below_100_exactly_when_there_is_a_cost(selling: Decimal, cost: Decimal) -> None:
    """The exact margin is < 100 iff cost > 0. After rounding to 0.01 a cost below 0.005% of the price
    shows as 100.00, so the rounded form is: 100.00 for a zero cost, never above 100, and below 100 iff
    the exact margin is below 99.995."""
    margin = margin_pct(selling, cost)
    assert margin is not None
    assert (exact_margin(selling, cost) < 100) == (cost > 0)
    if cost == 0:
        assert margin == Decimal(100)
    assert margin <= 100
    assert (margin < 100) == (exact_margin(selling, cost) < Fraction(99995, 1000))


def test_a_tiny_cost_rounds_to_a_margin_of_100() -> None:
    assert margin_pct(Decimal(1_000_000), Decimal("0.0001")) == Decimal("100.00")
    assert margin_pct(Decimal(100), Decimal("0.0051")) == Decimal("99.99")


@given(selling=amounts(), cost=st.none() | amounts())
def test_markup_is_undefined_exactly_without_a_cost_or_with_a_zero_cost(
    selling: Decimal, cost: Decimal | None
) -> None:
    assert (markup_pct(selling, cost) is None) == (cost is None or cost == 0)


@given(selling=amounts(), cost=st.none() | amounts())
def test_margin_is_undefined_exactly_for_a_zero_price_or_without_a_cost(
    selling: Decimal, cost: Decimal | None
) -> None:
    assert (margin_pct(selling, cost) is None) == (selling == 0 or cost is None)


def test_zero_edges() -> None:
    assert margin_pct(Decimal(0), Decimal(5)) is None
    assert markup_pct(Decimal(0), Decimal(5)) == Decimal("-100.00")
    assert margin_pct(Decimal(5), Decimal(0)) == Decimal("100.00")
    assert markup_pct(Decimal(5), Decimal(0)) is None
    assert margin_pct(Decimal(0), Decimal(0)) is None
    assert markup_pct(Decimal(0), Decimal(0)) is None


def percent_from_markup(markup: Fraction) -> Fraction:
    """margin / 100 = markup / (100 + markup), in percent; increasing in markup for markup > -100."""
    return markup / (100 + markup) * 100


@given(selling=amounts(Decimal("0.0001")), cost=amounts(Decimal("0.0001")))
@example(selling=Decimal("0.0001"), cost=MAX_MONEY)  # markup near -100: margin very sensitive to it
@example(selling=MAX_MONEY, cost=Decimal("0.0001"))  # margin near 100, markup huge
def test_margin_and_markup_agree_within_rounding(selling: Decimal, cost: Decimal) -> None:
    margin, markup = margin_pct(selling, cost), markup_pct(selling, cost)
    assert margin is not None
    assert markup is not None
    # The exact markup lies within half a cent of the rounded one; the exact margin follows from it
    # through an increasing function, and the rounded margin lies within half a cent of that.
    low_markup, high_markup = Fraction(markup) - HALF_CENT, Fraction(markup) + HALF_CENT
    high = percent_from_markup(high_markup) + HALF_CENT
    assert Fraction(margin) <= high
    if low_markup > -100:
        assert Fraction(margin) >= percent_from_markup(low_markup) - HALF_CENT


# --- currency rounding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("2.345", "EUR", "2.35"),
        ("2.344", "EUR", "2.34"),
        ("2.3449999", "EUR", "2.34"),
        ("0.005", "EUR", "0.01"),
        ("12", "EUR", "12.00"),
        ("99.5", "JPY", "100"),
        ("99.49", "JPY", "99"),
        ("1.2345", "KWD", "1.235"),
        ("1.2344", "KWD", "1.234"),
        ("0.0005", "KWD", "0.001"),
    ],
)
def test_round_to_currency_examples(amount: str, currency: str, rounded: str) -> None:
    result = round_to_currency(Decimal(amount), currency)
    assert result == Decimal(rounded)
    assert result.as_tuple().exponent == Decimal(rounded).as_tuple().exponent


@pytest.mark.parametrize(("currency", "minor"), [("EUR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3)])
def test_minor_units(currency: str, minor: int) -> None:
    assert MINOR_UNITS[currency] == minor
    assert round_to_currency(Decimal("1.23456"), currency).as_tuple().exponent == -minor


@given(
    amount=st.decimals(min_value=0, max_value=MAX_MONEY, places=6),
    currency=st.sampled_from(sorted(MINOR_UNITS)),
)
@example(amount=Decimal("0.5"), currency="JPY")
@example(amount=Decimal("0.0005"), currency="KWD")
@example(amount=Decimal("0.005"), currency="EUR")
def test_round_to_currency_is_half_up_to_minor_units_and_idempotent(amount: Decimal, currency: str) -> None:
    minor = MINOR_UNITS[currency]
    rounded = round_to_currency(amount, currency)
    assert rounded.as_tuple().exponent == -minor
    assert Fraction(rounded) == half_up(Fraction(amount), minor)
    assert abs(Fraction(rounded) - Fraction(amount)) <= Fraction(1, 2 * 10**minor)
    again = round_to_currency(rounded, currency)
    assert again == rounded
    assert again.as_tuple() == rounded.as_tuple()


# --- the Currency type ---------------------------------------------------------------------------------


def mixed_case(text: str, flips: list[bool]) -> str:
    return "".join(c.lower() if flip else c for c, flip in zip(text, flips, strict=True))


@given(
    code=st.sampled_from(sorted(MINOR_UNITS)),
    flips=st.lists(st.booleans(), min_size=3, max_size=3),
    pad=st.sampled_from(["", " ", "  ", "\t"]),
)
def test_known_currencies_are_normalised_to_upper_case(code: str, flips: list[bool], pad: str) -> None:
    assert CURRENCY.validate_python(f"{pad}{mixed_case(code, flips)}{pad}") == code


@given(code=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3))
def test_other_three_letter_codes_are_rejected(code: str) -> None:
    if code in MINOR_UNITS:
        assert CURRENCY.validate_python(code.lower()) == code
        return
    with pytest.raises(ValidationError, match="ISO 4217"):
        CURRENCY.validate_python(code)
    with pytest.raises(ValidationError, match="ISO 4217"):
        CURRENCY.validate_python(code.lower())


@pytest.mark.parametrize("value", ["", "EU", "EURO", "XXX", "€", "E U R", 978, None])
def test_currency_rejects_junk(value: object) -> None:
    with pytest.raises(ValidationError):
        CURRENCY.validate_python(value)


# --- the Money type ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1.5, 0.0, 2.0, -1.5])
def test_money_rejects_floats(value: float) -> None:
    with pytest.raises(ValidationError, match="decimal string"):
        MONEY.validate_python(value)


@pytest.mark.parametrize("raw", ["1.5", "12.90", "0.1", "2"])
def test_money_is_a_json_string_never_a_json_number(raw: str) -> None:
    """The documented format is a decimal string; a JSON integer is refused like a float."""
    with pytest.raises(ValidationError, match="decimal string"):
        MONEY.validate_json(raw)
    assert MONEY.validate_json(f'"{raw}"') == Decimal(raw)


@pytest.mark.parametrize("value", ["-0.01", "-1", -1, Decimal("-0.0001")])
def test_money_rejects_negatives(value: object) -> None:
    with pytest.raises(ValidationError):
        MONEY.validate_python(value)


@pytest.mark.parametrize("value", ["1.00001", "NaN", "Infinity", "abc", "", "12345678901.0"])
def test_money_rejects_bad_strings(value: str) -> None:
    with pytest.raises(ValidationError):
        MONEY.validate_python(value)


@pytest.mark.parametrize(
    ("value", "expected"), [("12.90", "12.90"), ("7", "7"), ("0", "0"), ("0.0001", "0.0001")]
)
def test_money_accepts_decimal_strings(value: object, expected: str) -> None:
    result = MONEY.validate_python(value)
    assert isinstance(result, Decimal)
    assert result == Decimal(expected)


@given(amount=st.decimals(min_value=0, max_value=MAX_MONEY, places=4))
def test_money_round_trips_as_a_json_string(amount: Decimal) -> None:
    parsed = MONEY.validate_python(str(amount))
    assert parsed == amount
    dumped = MONEY.dump_json(parsed)
    assert dumped.startswith(b'"')
    assert MONEY.validate_json(dumped) == amount


@given(amount=st.integers(min_value=0, max_value=10**10 - 1))
def test_money_refuses_any_amount_given_as_a_json_integer(amount: int) -> None:
    with pytest.raises(ValidationError, match="decimal string"):
        MONEY.validate_python(amount)
    with pytest.raises(ValidationError, match="decimal string"):
        MONEY.validate_json(str(amount))
    assert MONEY.validate_json(f'"{amount}"') == Decimal(amount)
