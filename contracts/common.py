"""Field types shared by commands and events."""

from __future__ import annotations

import functools
import re
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

# Checked before the upper-casing, so lower case passes; no Python call per value (pydantic-core's regex).
SKU_INPUT_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?$"
_MARKUP = re.compile(r"[<>]")
# C0 control characters but tab, line feed and carriage return, and DEL. PostgreSQL text cannot hold NUL at
# all: a command carrying one would fail its batch on every retry and stall the partition behind it.
_CONTROL_CHARS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
_CONTROL = re.compile(f"[{_CONTROL_CHARS}]")
_REFUSED = re.compile(f"[<>{_CONTROL_CHARS}]")  # what PlainText refuses: markup or control characters
# For inputs that are not contract fields (query parameters that reach a query).
CONTROL_FREE_PATTERN = f"^[^{_CONTROL_CHARS}]*$"


@functools.lru_cache(maxsize=1024)
def _check_plain_text(value: str) -> str:
    # Cached: a batch repeats the same actor and source in every command (~8 % of a batch's CPU at the
    # edge went to these checks); one search decides the common case.
    if _REFUSED.search(value) is None:
        return value
    if _MARKUP.search(value):
        raise ValueError("must not contain markup characters '<' or '>'")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (tab, line feed and carriage return may)")
    return value


Sku = Annotated[
    str,
    # Constraints of pydantic-core, not Python validators: a Python call per value was ~5 % of a batch's
    # CPU at the edge. The pattern is checked after the strip and before the upper-casing.
    StringConstraints(strip_whitespace=True, to_upper=True, pattern=SKU_INPUT_PATTERN),
    Field(
        description="Stock keeping unit: letters, digits and inner hyphens; normalised to upper case.",
        examples=["ABC-123"],
        json_schema_extra={"maxLength": 64},
    ),
]

PlainText = Annotated[
    str,
    AfterValidator(_check_plain_text),
    Field(json_schema_extra={"pattern": f"^[^<>{_CONTROL_CHARS}]*$"}),
]


def _no_float(value: object) -> object:
    if isinstance(value, float):
        raise ValueError('money must be a decimal string such as "12.90", not a JSON number')
    return value


# Money travels as a JSON string so no consumer ever parses it into a float.
MONEY_PATTERN = r"^\d{1,10}(\.\d{1,4})?$"

Money = Annotated[
    Decimal,
    BeforeValidator(_no_float),
    Field(ge=0, max_digits=14, decimal_places=4),
    PlainSerializer(lambda d: str(d), return_type=str, when_used="json"),
    # What goes on the wire: a decimal string (an integer is tolerated, a float is refused).
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["12.90"]}, mode="validation"),
]

Quantity = Annotated[int, Field(ge=0, le=1_000_000_000)]

ReservationId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="The sender's id of the reservation (e.g. an order line).",
        examples=["order-1001"],
    ),
]
