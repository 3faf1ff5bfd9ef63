"""Stock locations over HTTP: anyone may list them, admins create and change them. Each write and its
admin_audit row commit in one transaction (db.locations_repo, shared with `invmon location`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from sqlalchemy import RowMapping

from api_edge import audit
from api_edge.auth import require
from api_edge.problems import Problem
from api_edge.state import Clients, clients
from contracts.admin import AuditAction
from contracts.common import LocationCode
from contracts.locations import CreateLocation, Location, UpdateLocation
from db import locations_repo
from db.audit_repo import AuditRecord
from db.locations_repo import LocationError

router = APIRouter(prefix="/v1/locations", tags=["locations"], dependencies=[Depends(require("viewer"))])
ClientsDep = Annotated[Clients, Depends(clients)]
AdminOnly = [Depends(require("admin"))]
CodePath = Annotated[LocationCode, Path(description="The location's code.")]


def _location(row: RowMapping) -> Location:
    return Location(**row)


def _problem(error: LocationError) -> Problem:
    if error.conflict:
        return Problem(409, "Conflict", error.detail, type_="/problems/conflict")
    return Problem(404, "Not Found", error.detail, type_="/problems/not-found")


def _auditor(request: Request) -> locations_repo.Auditor:
    def record(action: AuditAction, target: str, details: dict[str, Any]) -> AuditRecord:
        return audit.entry(request, action, target, **details)

    return record


@router.get("")
async def list_locations(c: ClientsDep) -> list[Location]:
    """Every location, inactive ones too, by code. `default` always exists."""
    async with c.engine.connect() as conn:
        return [_location(row) for row in await locations_repo.list_locations(conn)]


@router.post(
    "",
    status_code=201,
    dependencies=AdminOnly,
    responses={409: {"description": "A location with this code exists."}},
)
async def create_location(body: CreateLocation, c: ClientsDep, request: Request) -> Location:
    """Add a location; stock commands may name it at once."""
    try:
        async with c.engine.begin() as conn:
            row = await locations_repo.create(conn, body, _auditor(request))
    except LocationError as error:
        raise _problem(error) from None
    return _location(row)


@router.patch(
    "/{code}",
    dependencies=AdminOnly,
    responses={
        404: {"description": "No location with this code."},
        409: {"description": "The default location cannot be deactivated."},
    },
)
async def update_location(code: CodePath, body: UpdateLocation, c: ClientsDep, request: Request) -> Location:
    """Rename a location, change its kind, or (de)activate it. An inactive location refuses stock commands
    (`inactive_location`); its stock stays and is still read and listed."""
    try:
        async with c.engine.begin() as conn:
            row = await locations_repo.change(conn, code, body, _auditor(request))
    except LocationError as error:
        raise _problem(error) from None
    return _location(row)
