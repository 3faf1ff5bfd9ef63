"""Export framing and row shapes: what the csv and json modules read back is what the rows held, and the
header, the keys and the query's columns all come from one column list."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from db import exports
from infra import export_format

NAMES = ("id", "sku", "reason", "notes", "new_price")
TRICKY = [
    (1, "A-1", 'comma, "quote"', "line one\nline two\r\nthree", "12.9000"),
    (2, "B-2", "ünïcødé €", None, "0.0000"),
]


def test_csv_reads_back_every_value() -> None:
    data = export_format.header("csv", NAMES) + export_format.encode("csv", NAMES, TRICKY)
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert rows[0] == list(NAMES)
    # csv has no types and no NULL: integers come back as text, None as an empty cell.
    assert rows[1:] == [[("" if v is None else str(v)) for v in row] for row in TRICKY]


def test_ndjson_is_one_object_per_line_with_the_shapes_keys() -> None:
    data = export_format.header("ndjson", NAMES) + export_format.encode("ndjson", NAMES, TRICKY)
    lines = data.decode().split("\n")
    assert lines[-1] == ""  # every record ends with a newline
    assert [json.loads(line) for line in lines[:-1]] == [dict(zip(NAMES, row, strict=True)) for row in TRICKY]


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match=r"shorter|longer"):
        export_format.encode("ndjson", NAMES, [(1, "A-1")])


@pytest.mark.parametrize("shape", [exports.LEDGER, exports.PRICE_HISTORY])
def test_the_query_selects_the_shapes_columns_in_order(shape: exports.Shape) -> None:
    query, args = exports.select(shape, exports.ExportFilter())
    assert query.startswith(f"SELECT {', '.join(c.sql for c in shape.columns)} FROM {shape.table} ")
    assert query.endswith("ORDER BY created_at, id")
    assert args == []
    assert len(set(shape.names)) == len(shape.names)


def test_filters_are_bound_parameters() -> None:
    since, until = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    query, args = exports.select(
        exports.LEDGER, exports.ExportFilter(category="x'; DROP TABLE items; --", since=since, until=until)
    )
    assert "DROP" not in query
    assert "category = $1" in query
    assert "created_at >= $2 AND created_at < $3" in query
    assert args == ["x'; DROP TABLE items; --", since, until]
