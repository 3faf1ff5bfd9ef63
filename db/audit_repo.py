"""Append to and read the admin audit trail. Rows are only ever inserted (the table refuses the rest)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import RowMapping, and_, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.admin import AuditAction
from db.audit_models import AdminAudit


@dataclass(frozen=True, slots=True)
class AuditRecord:
    actor: str
    action: AuditAction
    target: str
    client: str
    details: dict[str, Any] = field(default_factory=dict)


async def record(conn: AsyncConnection, entry: AuditRecord) -> None:
    """In the caller's transaction, so the action and its record commit together or not at all."""
    await conn.execute(
        insert(AdminAudit).values(
            actor=entry.actor,
            action=entry.action,
            target=entry.target,
            details=entry.details,
            client=entry.client,
        )
    )


async def record_pg(pg: asyncpg.Connection, entry: AuditRecord) -> None:
    """`record` for code that holds the asyncpg connection (`command_log.transaction`)."""
    await pg.execute(
        "INSERT INTO admin_audit (actor, action, target, details, client) VALUES ($1, $2, $3, $4::jsonb, $5)",
        entry.actor,
        entry.action,
        entry.target,
        json.dumps(entry.details),
        entry.client,
    )


async def page(
    conn: AsyncConnection,
    *,
    limit: int,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: tuple[datetime, int] | None = None,
) -> list[RowMapping]:
    """Newest first; `before` is the (at, id) of the last row of the previous page."""
    table = AdminAudit.__table__
    query = select(table).order_by(AdminAudit.at.desc(), AdminAudit.id.desc()).limit(limit)
    if actor is not None:
        query = query.where(AdminAudit.actor == actor)
    if action is not None:
        query = query.where(AdminAudit.action == action)
    if since is not None:
        query = query.where(AdminAudit.at >= since)
    if until is not None:
        query = query.where(AdminAudit.at < until)
    if before is not None:
        at, row_id = before
        query = query.where(or_(AdminAudit.at < at, and_(AdminAudit.at == at, AdminAudit.id < row_id)))
    return list((await conn.execute(query)).mappings())
