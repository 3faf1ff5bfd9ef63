"""Currencies and money arithmetic shared by contracts and rules. Decimal only, never float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

# ISO 4217 codes we accept, with their minor units (digits after the decimal point).
MINOR_UNITS: dict[str, int] = {
    "AUD": 2, "BGN": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CNY": 2, "CZK": 2, "DKK": 2, "EUR": 2,
    "GBP": 2, "HKD": 2, "HUF": 2, "INR": 2, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "MXN": 2,
    "NOK": 2, "NZD": 2, "OMR": 3, "PLN": 2, "RON": 2, "SEK": 2, "SGD": 2, "TND": 3, "TRY": 2, "USD": 2,
    "ZAR": 2,
}  # fmt: skip

HUNDRED = Decimal(100)
PERCENT_QUANTUM = Decimal("0.01")


def _check_currency(value: str) -> str:
    if value not in MINOR_UNITS:
        raise ValueError(f"unknown or unsupported ISO 4217 currency {value!r}")
    return value


Currency = Annotated[
    str,
    BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v),
    AfterValidator(_check_currency),
    Field(description="ISO 4217 currency code.", examples=["EUR"]),
]


def round_to_currency(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the currency's minor units (EUR 2.345 -> 2.35, JPY 99.5 -> 100)."""
    return amount.quantize(Decimal(1).scaleb(-MINOR_UNITS[currency]), rounding=ROUND_HALF_UP)


def margin_pct(selling: Decimal, cost: Decimal | None) -> Decimal | None:
    """(selling - cost) / selling, in percent; undefined (None) without a cost or for a zero price."""
    if cost is None or selling == 0:
        return None
    return ((selling - cost) / selling * HUNDRED).quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_UP)


def markup_pct(selling: Decimal, cost: Decimal | None) -> Decimal | None:
    """(selling - cost) / cost, in percent; undefined (None) without a cost or for a zero cost."""
    if cost is None or cost == 0:
        return None
    return ((selling - cost) / cost * HUNDRED).quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_UP)


def change_pct(old: Decimal | None, new: Decimal) -> Decimal | None:
    """Relative change in percent; undefined (None) from no price or from zero."""
    if old is None or old == 0:
        return None
    return ((new - old) / old * HUNDRED).quantize(PERCENT_QUANTUM, rounding=ROUND_HALF_UP)
