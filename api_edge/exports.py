"""Streaming exports of the stock ledger and the price history (CSV or NDJSON) for audits.

The response is written while a server-side cursor is read, one chunk of rows at a time: the edge holds one
chunk per export however many rows the range has, and a slow client slows the cursor (uvicorn's flow
control) instead of filling memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api_edge.auth import require
from api_edge.problems import Problem
from api_edge.state import Clients, clients
from contracts.common import CONTROL_FREE_PATTERN, Instant, Sku
from db import exports
from db.command_log import driver
from infra import export_format
from infra.export_format import ExportFormat

router = APIRouter(prefix="/v1/exports", tags=["exports"], dependencies=[Depends(require("viewer"))])
ClientsDep = Annotated[Clients, Depends(clients)]

SkuQuery = Annotated[Sku | None, Query(description="Only this SKU.")]
CategoryQuery = Annotated[
    str | None,
    Query(
        max_length=100,
        pattern=CONTROL_FREE_PATTERN,
        description="Only the SKUs of items in this category (their category now).",
        examples=["tools"],
    ),
]
FromQuery = Annotated[
    Instant | None,
    Query(
        alias="from",
        description="Rows created at or after this instant (timezone-aware).",
        examples=["2026-01-01T00:00:00Z"],
    ),
]
UntilQuery = Annotated[
    Instant | None,
    Query(
        description="Rows created before this instant (timezone-aware).", examples=["2026-02-01T00:00:00Z"]
    ),
]
FormatQuery = Annotated[
    ExportFormat | None,
    Query(description="csv or ndjson; when absent, the Accept header decides (default csv)."),
]
AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]


def _format(requested: ExportFormat | None, accept: str | None) -> ExportFormat:
    if requested is not None:
        return requested
    media = {part.split(";", 1)[0].strip().lower() for part in (accept or "*/*").split(",")}
    if "application/x-ndjson" in media:
        return "ndjson"
    if media & {"text/csv", "text/*", "*/*", ""}:
        return "csv"
    raise Problem(
        406,
        "Not Acceptable",
        "exports are served as text/csv or application/x-ndjson",
        type_="/problems/not-acceptable",
    )


def _filter(
    sku: str | None, category: str | None, since: datetime | None, until: datetime | None
) -> exports.ExportFilter:
    if sku is not None and category is not None:
        raise Problem(
            422, "Conflicting filters", "give sku or category, not both", type_="/problems/validation"
        )
    if since is not None and until is not None and since >= until:
        raise Problem(422, "Empty time range", "`from` must be before `until`", type_="/problems/validation")
    return exports.ExportFilter(sku=sku, category=category, since=since, until=until)


def _example(shape: exports.Shape, sample: list[Any]) -> dict[str, Any]:
    return {
        "description": "The rows, oldest first (by created_at, then id). Columns / keys: "
        f"{', '.join(shape.names)}. "
        "Money is decimal text, instants ISO 8601 UTC, absent values empty (CSV) or null (NDJSON).",
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": export_format.header("csv", shape.names).decode()
                + export_format.encode("csv", shape.names, [sample]).decode(),
            },
            "application/x-ndjson": {
                "schema": {"type": "string"},
                "example": export_format.encode("ndjson", shape.names, [sample]).decode(),
            },
        },
    }


_LEDGER_SAMPLE = [
    1, "2026-01-05T09:30:00.000000Z", "0b9a4a52-6d0e-4a43-9a57-0e6f3e6f61a1", "ABC-123", 10, 0, 10, 0,
    "receive_stock", "user:alice",
]  # fmt: skip
_PRICE_SAMPLE = [
    1, "2026-01-05T09:30:00.000000Z", "5e0c2f7e-3b1a-4e44-8a57-1c5f4a3d2b10",
    "0b9a4a52-6d0e-4a43-9a57-0e6f3e6f61a1", "ABC-123", "EUR", "12.0000", "12.9000", "0.9000", "7.50",
    "12.9000", None, "8.0000", "37.98", "manual", "supplier price rise", None, None, None, "user:alice",
    None,
]  # fmt: skip


async def _stream(
    c: Clients, shape: exports.Shape, f: exports.ExportFilter, fmt: ExportFormat
) -> AsyncIterator[bytes]:
    yield export_format.header(fmt, shape.names)
    async with c.reads.connect() as conn:
        pg = await driver(conn)
        async with pg.transaction(isolation="repeatable_read", readonly=True):
            async for rows in exports.batches(pg, shape, f):
                yield export_format.encode(fmt, shape.names, rows)


# Per edge process, below the read engine's pool (5 + 5 overflow): however many exports are asked for, the
# reads keep connections.
MAX_RUNNING_EXPORTS = 2
RETRY_AFTER_S = 10


class _ExportResponse(StreamingResponse):
    """Frees its export slot however the response ends: streamed to the end, failed, or abandoned by a
    client that went away (even before the first chunk, when the body's generator never started)."""

    def __init__(
        self, c: Clients, content: AsyncIterator[bytes], media_type: str, headers: dict[str, str]
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self._clients = c

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._clients.exports_running -= 1


def _asked(
    sku: SkuQuery = None,
    category: CategoryQuery = None,
    since: FromQuery = None,
    until: UntilQuery = None,
    format: FormatQuery = None,
    accept: AcceptHeader = None,
) -> tuple[exports.ExportFilter, ExportFormat]:
    """The query both exports take: which rows, and in which format."""
    return _filter(sku, category, since, until), _format(format, accept)


AskedDep = Annotated[tuple[exports.ExportFilter, ExportFormat], Depends(_asked)]


def _response(
    c: Clients, kind: exports.ExportKind, f: exports.ExportFilter, fmt: ExportFormat
) -> StreamingResponse:
    if c.exports_running >= MAX_RUNNING_EXPORTS:
        raise Problem(
            503,
            "Too many exports running",
            f"this edge streams at most {MAX_RUNNING_EXPORTS} exports at once; retry later",
            type_="/problems/exports-busy",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    c.exports_running += 1
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return _ExportResponse(
        c,
        _stream(c, exports.SHAPES[kind], f, fmt),
        media_type=export_format.MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{kind}-{stamp}.{fmt}"'},
    )


@router.get(
    "/ledger", response_class=StreamingResponse, responses={200: _example(exports.LEDGER, _LEDGER_SAMPLE)}
)
async def export_ledger(c: ClientsDep, asked: AskedDep) -> StreamingResponse:
    """Every stock movement (on hand and reserved) of a SKU, a category or everything, over a time range,
    streamed as CSV or NDJSON."""
    return _response(c, "ledger", *asked)


@router.get(
    "/price-history",
    response_class=StreamingResponse,
    responses={200: _example(exports.PRICE_HISTORY, _PRICE_SAMPLE)},
)
async def export_price_history(c: ClientsDep, asked: AskedDep) -> StreamingResponse:
    """Every change of a price in force (all currencies) of a SKU, a category or everything, over a time
    range, streamed as CSV or NDJSON."""
    return _response(c, "price-history", *asked)
