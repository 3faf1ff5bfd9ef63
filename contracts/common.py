"""Field types shared by commands and events."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    PlainSerializer,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
)

# Checked before the upper-casing, so lower case passes; no Python call per value (pydantic-core's regex).
SKU_INPUT_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?$"

# Control characters (C0, DEL, C1). PostgreSQL text cannot hold NUL at all: a command carrying one would
# fail its batch on every retry and stall the partition behind it. Line breaks (CR, LF, NEL, U+2028/9) in a
# name or category could split an email header the notifier writes it into.
_LINE_BREAKS = r"\n\r\x85\u2028\u2029"
_CONTROL_CHARS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f"  # all but tab and the line breaks
_SINGLE_LINE_REFUSED = rf"\t{_LINE_BREAKS}{_CONTROL_CHARS}"
# Lone surrogates (a JSON "\ud800" escape) cannot be encoded as UTF-8, so not stored or published either.
_SURROGATES = r"\ud800-\udfff"
_MARKUP = re.compile(r"[<>]")
_UNENCODABLE = re.compile(f"[{_SURROGATES}]")
_REFUSED_SINGLE = re.compile(f"[<>{_SINGLE_LINE_REFUSED}{_SURROGATES}]")
_REFUSED_MULTI = re.compile(f"[<>{_CONTROL_CHARS}{_SURROGATES}]")
# For inputs that are not contract fields (query parameters that reach a query). No surrogate range: a
# query string is percent-decoded with replacement characters, and pydantic-core's regex refuses them.
CONTROL_FREE_PATTERN = f"^[^{_SINGLE_LINE_REFUSED}]*$"


def _refusal(value: str, *, single_line: bool) -> str:
    if _UNENCODABLE.search(value):
        return "must be valid Unicode text (a lone surrogate such as \\ud800 is not)"
    if _MARKUP.search(value):
        return "must not contain markup characters '<' or '>'"
    if single_line:
        return "must be one line without control characters (tab, line feed and carriage return included)"
    return "must not contain control characters (tab, line feed and carriage return may)"


@functools.lru_cache(maxsize=1024)
def _check_single_line(value: str) -> str:
    # Cached: a batch repeats the same actor and source in every command (~8 % of a batch's CPU at the
    # edge went to these checks); one search decides the common case.
    if _REFUSED_SINGLE.search(value) is None:
        return value
    raise ValueError(_refusal(value, single_line=True))


@functools.lru_cache(maxsize=1024)
def _check_multi_line(value: str) -> str:
    if _REFUSED_MULTI.search(value) is None:
        return value
    raise ValueError(_refusal(value, single_line=False))


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
    AfterValidator(_check_single_line),
    Field(json_schema_extra={"pattern": f"^[^<>{_SINGLE_LINE_REFUSED}{_SURROGATES}]*$"}),
]
"""One line of text without markup: names, categories, actors, sources, short reasons (any field that may
reach a header, a log line or a CSV cell)."""

MultiLineText = Annotated[
    str,
    AfterValidator(_check_multi_line),
    Field(json_schema_extra={"pattern": f"^[^<>{_CONTROL_CHARS}{_SURROGATES}]*$"}),
]
"""Text that may hold tabs and line breaks (descriptions, notes, comments); it never reaches a header."""


# Money travels as a JSON string so no consumer ever parses it into a float: up to 10 ASCII digits, then up
# to 4 decimals. Nothing else: no exponent, underscore, sign, space or other script's digits (each of which
# Decimal() would read), no JSON number or boolean.
MONEY_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,4})?$"
_MONEY = re.compile(MONEY_PATTERN)


def _money_string(value: object) -> object:
    if isinstance(value, Decimal):  # built in Python (rules, rows read back), not parsed from a client
        return value
    if isinstance(value, str) and _MONEY.fullmatch(value):
        return value
    if isinstance(value, str):
        raise ValueError(f'money must be a decimal string such as "12.90" (pattern {MONEY_PATTERN})')
    raise ValueError('money must be a decimal string such as "12.90", not a JSON number or boolean')


Money = Annotated[
    Decimal,
    BeforeValidator(_money_string),
    Field(ge=0, max_digits=14, decimal_places=4),
    # Fixed-point: str() would write some decimals with an exponent ("1E+3"), which the pattern refuses.
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "examples": ["12.90"]}, mode="validation"),
]

# Counts are JSON integers, validated strictly: lax mode would read true as 1, "12" and 12.0 as 12 and
# "1_000" as 1000.
Quantity = Annotated[StrictInt, Field(ge=0, le=1_000_000_000)]

# Every instant both Python and PostgreSQL can hold, compared in UTC: 9999-12-31T23:59:59-23:59 is a valid
# ISO 8601 string but lies in the year 10000 in UTC, and would fail wherever it is converted or stored.
EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
Instant = Annotated[
    AwareDatetime,
    Field(
        ge=EARLIEST,
        le=LATEST,
        # What pydantic does not write for a datetime's bounds (ajv's keywords for a format's range).
        json_schema_extra={
            "formatMinimum": EARLIEST.isoformat().replace("+00:00", "Z"),
            "formatMaximum": LATEST.isoformat().replace("+00:00", "Z"),
        },
    ),
]
"""A timezone-aware instant between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z (in UTC).
pydantic-core compares in UTC, with no Python call."""

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

DEFAULT_LOCATION = "default"
"""The location every stock command without a `location` acts at; it always exists and is active."""

LOCATION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"

LocationCode = Annotated[
    str,
    # Case is kept (no folding): codes are identifiers chosen by the business, compared as written.
    StringConstraints(pattern=LOCATION_PATTERN),
    Field(
        description="Code of a stock location (warehouse, store or virtual): letters, digits, '.', '_' and"
        " '-', at most 40 characters, starting with a letter or digit. 'default' is the location of stock"
        " whose commands name none.",
        examples=["WH-EU-1"],
    ),
]
