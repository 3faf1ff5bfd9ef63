"""CSV and NDJSON encodings of export rows, shared by the edge and the CLI.

The values arrive already rendered by the query (text for money, instants and ids; integers; NULL), so
encoding is only framing: the same rows give the same bytes from either entry point.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

ExportFormat = Literal["csv", "ndjson"]
MEDIA_TYPES: dict[ExportFormat, str] = {"csv": "text/csv", "ndjson": "application/x-ndjson"}


def header(fmt: ExportFormat, names: Sequence[str]) -> bytes:
    """What precedes the rows: the CSV header line (NDJSON has none)."""
    return encode(fmt, names, [tuple(names)]) if fmt == "csv" else b""


def encode(fmt: ExportFormat, names: Sequence[str], rows: Iterable[Any]) -> bytes:
    if fmt == "csv":
        buffer = io.StringIO()
        # RFC 4180 line ends; NULL is an empty cell.
        csv.writer(buffer, lineterminator="\r\n").writerows(rows)
        return buffer.getvalue().encode()
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    return "".join(dumps(dict(zip(names, row, strict=True))) + "\n" for row in rows).encode()
