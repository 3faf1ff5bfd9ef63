"""`invmon location add|list|update`: the stock locations, through the same queries and rules as the edge's
`/v1/locations` (db.locations_repo), each write recorded in the audit trail as `cli:<os user>`."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, TypeVar, get_args

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import RowMapping

from contracts.admin import AuditAction
from contracts.locations import CreateLocation, LocationKind, UpdateLocation
from db import locations_repo
from db.audit_repo import AuditRecord
from db.locations_repo import LocationError
from invmon.cli_auth import _audit, _transaction

location_app = typer.Typer(help="Stock locations: warehouses, stores, virtual places.", no_args_is_help=True)
console = Console(highlight=False)
KINDS = get_args(LocationKind)
Model = TypeVar("Model", CreateLocation, UpdateLocation)
KindOption = typer.Option("--kind", help=f"One of {', '.join(KINDS)}.")


def _cli_audit(action: AuditAction, target: str, details: dict[str, Any]) -> AuditRecord:
    return _audit(action, target, **details)


def _valid(build: type[Model], **values: Any) -> Model:
    try:
        return build(**values)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "input"
        raise typer.BadParameter(f"{where}: {first['msg']}") from None


async def _list() -> list[RowMapping]:
    async with _transaction() as conn:
        return await locations_repo.list_locations(conn)


async def _create(new: CreateLocation) -> RowMapping:
    async with _transaction() as conn:
        return await locations_repo.create(conn, new, _cli_audit)


async def _change(code: str, change: UpdateLocation) -> RowMapping:
    async with _transaction() as conn:
        return await locations_repo.change(conn, code, change, _cli_audit)


def _refused(error: LocationError) -> typer.Exit:
    console.print(error.detail)
    return typer.Exit(1)


@location_app.command("add")
def location_add(
    code: Annotated[str, typer.Argument(help="Letters, digits, '.', '_', '-'; at most 40 characters.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    kind: Annotated[str, KindOption] = "warehouse",
) -> None:
    """Add a location; stock commands may name it at once."""
    new = _valid(CreateLocation, code=code, name=name, kind=kind)
    try:
        row = asyncio.run(_create(new))
    except LocationError as error:
        raise _refused(error) from None
    console.print(f"location {row['code']} ({row['kind']}) added")


@location_app.command("list")
def location_list() -> None:
    """Every location, inactive ones too, by code."""
    table = Table("code", "name", "kind", "active", "created")
    for row in asyncio.run(_list()):
        table.add_row(
            row["code"],
            row["name"],
            row["kind"],
            "yes" if row["is_active"] else "no",
            row["created_at"].isoformat(timespec="seconds"),
        )
    console.print(table)


@location_app.command("update")
def location_update(
    code: Annotated[str, typer.Argument(help="The location's code.")],
    name: Annotated[str | None, typer.Option("--name", help="New display name.")] = None,
    kind: Annotated[str | None, KindOption] = None,
    active: Annotated[
        bool | None,
        typer.Option(
            "--active/--inactive",
            help="An inactive location refuses stock commands; its stock stays. 'default' stays active.",
        ),
    ] = None,
) -> None:
    """Rename a location, change its kind, or (de)activate it."""
    values = {k: v for k, v in (("name", name), ("kind", kind), ("is_active", active)) if v is not None}
    change = _valid(UpdateLocation, **values)
    try:
        row = asyncio.run(_change(code, change))
    except LocationError as error:
        raise _refused(error) from None
    state = "active" if row["is_active"] else "inactive"
    console.print(f"location {row['code']}: {row['name']} ({row['kind']}, {state})")
