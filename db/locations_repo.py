"""Stock locations: the queries the edge's `/v1/locations` and `invmon location` share. Each write records its
admin_audit row in the caller's transaction, so a location never changes without its record."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import RowMapping, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.admin import AuditAction
from contracts.common import DEFAULT_LOCATION
from contracts.locations import CreateLocation, UpdateLocation
from db import audit_repo
from db.audit_repo import AuditRecord
from db.models import Location

SHOWN = (Location.code, Location.name, Location.kind, Location.is_active, Location.created_at)
# Who did it and from where: the edge's request or the CLI's operator.
Auditor = Callable[[AuditAction, str, dict[str, Any]], AuditRecord]


class LocationError(Exception):
    """A write the rules refuse; `conflict` tells a clash (409) from an unknown code (404)."""

    def __init__(self, detail: str, *, conflict: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.conflict = conflict


def refusal(code: str, change: UpdateLocation) -> str | None:
    """Why a change may not be made, or None. Stock commands without a location go to the default one,
    so it must stay open to them."""
    if code == DEFAULT_LOCATION and change.is_active is False:
        return f"the {DEFAULT_LOCATION!r} location cannot be deactivated"
    return None


async def list_locations(conn: AsyncConnection) -> list[RowMapping]:
    """Every location, inactive ones too, by code."""
    return list((await conn.execute(select(*SHOWN).order_by(Location.code))).mappings())


async def find(conn: AsyncConnection, code: str) -> RowMapping | None:
    return (await conn.execute(select(*SHOWN).where(Location.code == code))).mappings().first()


async def create(conn: AsyncConnection, new: CreateLocation, audit: Auditor) -> RowMapping:
    query = (
        pg_insert(Location)
        .values(code=new.code, name=new.name, kind=new.kind)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(*SHOWN)
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise LocationError(f"a location {new.code!r} exists; change it with PATCH", conflict=True)
    await audit_repo.record(
        conn, audit("location.create", f"location:{new.code}", {"name": new.name, "kind": new.kind})
    )
    return row


async def change(conn: AsyncConnection, code: str, change: UpdateLocation, audit: Auditor) -> RowMapping:
    refused = refusal(code, change)
    if refused is not None:
        raise LocationError(refused, conflict=True)
    values = change.model_dump(exclude_none=True)
    query = (
        update(Location)
        .where(Location.code == code)
        .values(**values, updated_at=func.clock_timestamp())
        .returning(*SHOWN)
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise LocationError(f"no location {code!r}", conflict=False)
    await audit_repo.record(conn, audit("location.update", f"location:{code}", {"changes": values}))
    return row
