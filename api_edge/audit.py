"""The admin audit trail at the edge: what every admin route records, and `GET /v1/admin/audit`.

An action and its audit row commit in one transaction, so there is no action without its record. Price
approvals are the exception: they travel as Kafka commands to the price worker, so the edge records who
asked, from where, once the broker has accepted the command (the command's outcome is its own record).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime
from sqlalchemy.ext.asyncio import AsyncConnection

from api_edge import auth
from api_edge.auth import require
from api_edge.problems import Problem
from api_edge.requests import BIGINT_MAX
from api_edge.state import clients
from contracts.admin import AuditAction, AuditEntry, AuditPage
from contracts.common import CONTROL_FREE_PATTERN
from contracts.price_commands import ApprovePriceChange, RejectPriceChange
from db import audit_repo
from db.audit_repo import AuditRecord

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require("admin"))])


def entry(request: Request, action: AuditAction, target: str, **details: Any) -> AuditRecord:
    """The record of `action` by this request's caller, from its client address."""
    # The address the per-IP rate limit counts (api_edge.ratelimit): where the request came from.
    client = request.client.host if request.client else "unknown"
    return AuditRecord(auth.actor(request), action, target, client, details)


async def record(
    conn: AsyncConnection, request: Request, action: AuditAction, target: str, **details: Any
) -> None:
    await audit_repo.record(conn, entry(request, action, target, **details))


async def record_pg(
    pg: asyncpg.Connection, request: Request, action: AuditAction, target: str, **details: Any
) -> None:
    await audit_repo.record_pg(pg, entry(request, action, target, **details))


# The price commands that are admin actions: a pricing person's decision on someone else's price change.
DECISIONS: dict[type[ApprovePriceChange | RejectPriceChange], AuditAction] = {
    ApprovePriceChange: "price_change.approve",
    RejectPriceChange: "price_change.reject",
}


def decision_entry(
    request: Request,
    action: AuditAction,
    sku: str,
    change_id: uuid.UUID,
    command_id: str,
    comment: str | None,
) -> AuditRecord:
    """The record of a price decision the broker has accepted (single routes and the price batch)."""
    return entry(
        request, action, f"price_change:{change_id}", sku=sku, command_id=command_id, comment=comment
    )


async def record_decisions(request: Request, commands: Sequence[object]) -> None:
    """Record the price decisions among commands the broker has accepted, in one transaction."""
    entries = [
        decision_entry(request, DECISIONS[type(c)], c.sku, c.change_id, str(c.command_id), c.comment)
        for c in commands
        if isinstance(c, ApprovePriceChange | RejectPriceChange)
    ]
    if entries:
        async with clients(request).engine.begin() as conn:
            for one in entries:
                await audit_repo.record(conn, one)


def _cursor(at: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{row_id}".encode()).decode().rstrip("=")


def _position(cursor: str) -> tuple[datetime, int]:
    try:
        at, _, row_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition("|")
        when, position = datetime.fromisoformat(at), int(row_id)
        if when.tzinfo is None or not 0 < position <= BIGINT_MAX:
            raise ValueError("not a cursor this edge made")
        return when.astimezone(UTC), position
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as error:
        raise _bad_cursor() from error


def _bad_cursor() -> Problem:
    return Problem(
        422, "Invalid cursor", "pass a next_cursor from a previous page", type_="/problems/validation"
    )


def _utc(value: datetime | None) -> datetime | None:
    try:
        return value.astimezone(UTC) if value else None
    except OverflowError as error:  # 9999-12-31T23:59-01:00 is past the last instant PostgreSQL holds
        raise Problem(422, "Invalid time", "out of range", type_="/problems/validation") from error


@router.get("/audit")
async def audit_trail(
    request: Request,
    actor: Annotated[
        str | None,
        Query(
            max_length=200, pattern=CONTROL_FREE_PATTERN, description="Only this actor, e.g. `user:alice`."
        ),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=64, pattern=CONTROL_FREE_PATTERN, description="Only this action, e.g. `apikey.revoke`."
        ),
    ] = None,
    since: Annotated[AwareDatetime | None, Query(description="Recorded at or after this instant.")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Recorded before this instant.")] = None,
    cursor: Annotated[
        str | None, Query(max_length=200, description="The `next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """The admin audit trail, newest first, a page at a time (keyset: pages stay stable while rows
    are added)."""
    before = _position(cursor) if cursor else None
    async with clients(request).engine.connect() as conn:
        rows = await audit_repo.page(
            conn,
            limit=limit + 1,
            actor=actor,
            action=action,
            since=_utc(since),
            until=_utc(until),
            before=before,
        )
    items = [AuditEntry(**row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return AuditPage(items=items, next_cursor=_cursor(last.at, last.id) if last else None)
