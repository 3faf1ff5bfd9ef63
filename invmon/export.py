"""`invmon export ledger|price-history`: the edge's export query, read straight from PostgreSQL into a file,
with a progress bar. Same rows, same bytes as `GET /v1/exports/...` (db.exports, infra.export_format)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from pydantic import TypeAdapter, ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from contracts.common import Instant, LocationCode, Sku
from db import exports
from infra import export_format
from infra.export_format import ExportFormat
from infra.settings import Settings, get_settings

export_app = typer.Typer(help="Export the stock ledger or the price history (CSV or NDJSON).")

_SKU: TypeAdapter[str] = TypeAdapter(Sku)
_INSTANT: TypeAdapter[datetime] = TypeAdapter(Instant)
_LOCATION: TypeAdapter[str] = TypeAdapter(LocationCode)


def _parse(adapter: TypeAdapter[object], value: str | None, option: str) -> object:
    if value is None:
        return None
    try:
        return adapter.validate_python(value)
    except ValidationError as error:
        raise typer.BadParameter(error.errors()[0]["msg"], param_hint=option) from None


def dsn(settings: Settings) -> str:
    return settings.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def write(
    settings: Settings, shape: exports.Shape, f: exports.ExportFilter, fmt: ExportFormat, output: Path
) -> int:
    pg = await asyncpg.connect(dsn(settings))
    try:
        # One snapshot for the count and the rows, so the bar's total is the file's row count.
        async with pg.transaction(isolation="repeatable_read", readonly=True):
            total = await exports.count(pg, shape, f)
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
            )
            with output.open("wb") as out, Progress(*columns, transient=False) as progress:
                task = progress.add_task(f"{shape.kind} -> {output}", total=total)
                out.write(export_format.header(fmt, shape.names))
                async for rows in exports.batches(pg, shape, f):
                    out.write(export_format.encode(fmt, shape.names, rows))
                    progress.advance(task, len(rows))
    finally:
        await pg.close()
    return total


def _command(kind: exports.ExportKind) -> None:
    def command(
        output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
        sku: Annotated[str | None, typer.Option(help="Only this SKU.")] = None,
        category: Annotated[str | None, typer.Option(help="Only the items of this category.")] = None,
        since: Annotated[
            str | None,
            typer.Option("--from", help="Rows created at or after this ISO 8601 instant (with zone)."),
        ] = None,
        until: Annotated[str | None, typer.Option(help="Rows created before this ISO 8601 instant.")] = None,
        location: Annotated[
            str | None, typer.Option(help="Ledger only: the movements at this location.")
        ] = None,
        fmt: Annotated[str, typer.Option("--format", help="csv or ndjson.")] = "csv",
    ) -> None:
        if fmt not in export_format.MEDIA_TYPES:
            raise typer.BadParameter("choose csv or ndjson", param_hint="--format")
        if sku and category:
            raise typer.BadParameter("give --sku or --category, not both")
        f = exports.ExportFilter(
            sku=_parse(_SKU, sku, "--sku"),  # type: ignore[arg-type]
            category=category,
            since=_parse(_INSTANT, since, "--from"),  # type: ignore[arg-type]
            until=_parse(_INSTANT, until, "--until"),  # type: ignore[arg-type]
            location=_parse(_LOCATION, location, "--location"),  # type: ignore[arg-type]
        )
        refused = exports.refusal(exports.SHAPES[kind], f)
        if refused is not None:
            raise typer.BadParameter(refused, param_hint="--location")
        if f.since and f.until and f.since >= f.until:
            raise typer.BadParameter("--from must be before --until")
        total = asyncio.run(write(get_settings(), exports.SHAPES[kind], f, fmt, output))
        typer.echo(f"{total} row(s) written to {output}")

    command.__doc__ = (
        f"Write the {kind} (oldest first) to a file, as the edge's /v1/exports/{kind} serves it."
    )
    export_app.command(kind)(command)


for _kind in exports.EXPORT_KINDS:
    _command(_kind)
