"""Read API, served from PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from api_edge.auth import require
from api_edge.problems import Problem
from api_edge.state import Clients, clients
from api_edge.views import CommandStatusView, ItemView, LedgerEntryView, LedgerPage
from contracts.common import Sku
from db import read_repo

router = APIRouter(prefix="/v1", tags=["reads"], dependencies=[Depends(require("viewer"))])
ClientsDep = Annotated[Clients, Depends(clients)]


@router.get("/items/{sku}", responses={404: {"description": "No such item."}})
async def get_item(sku: Annotated[Sku, Path()], c: ClientsDep) -> ItemView:
    """An item with its on-hand, reserved and available stock."""
    async with c.engine.connect() as conn:
        row = await read_repo.get_item(conn, sku)
    if row is None:
        raise Problem(404, "Item not found", f"no item with sku {sku}", type_="/problems/not-found")
    return ItemView(
        **{k: row[k] for k in ItemView.model_fields if k in row},
        on_hand=row["stock_quantity"],
        reserved=row["reserved_quantity"],
        available=row["stock_quantity"] - row["reserved_quantity"],
    )


@router.get("/items/{sku}/ledger")
async def get_ledger(
    sku: Annotated[Sku, Path()],
    c: ClientsDep,
    after: Annotated[int, Query(ge=0, description="Return entries after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LedgerPage:
    """Every stock movement of an item, oldest first."""
    async with c.engine.connect() as conn:
        rows = await read_repo.get_ledger(conn, sku, after=after, limit=limit)
    entries = [LedgerEntryView(**{k: r[k] for k in LedgerEntryView.model_fields}) for r in rows]
    next_after = entries[-1].id if len(entries) == limit else None
    return LedgerPage(sku=sku, entries=entries, next_after=next_after)


@router.get("/commands/{command_id}")
async def get_command(command_id: uuid.UUID, c: ClientsDep) -> CommandStatusView:
    """What became of a command: applied, rejected (with the reason), or unknown (not applied yet)."""
    async with c.engine.connect() as conn:
        row = await read_repo.get_command(conn, command_id)
    if row is None:
        return CommandStatusView(command_id=command_id, status="unknown")
    return CommandStatusView(**row)
