"""Read API, served from PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import RowMapping

from api_edge.auth import Principal, require
from api_edge.problems import Problem
from api_edge.requests import AfterId
from api_edge.state import Clients, clients
from api_edge.views import (
    AlertView,
    CommandStatusView,
    ItemPage,
    ItemView,
    LedgerEntryView,
    LedgerPage,
    location_views,
)
from contracts.common import CONTROL_FREE_PATTERN, LocationCode, Sku
from contracts.money import margin_pct
from db import price_reads, read_repo

router = APIRouter(prefix="/v1", tags=["reads"], dependencies=[Depends(require("viewer"))])
ClientsDep = Annotated[Clients, Depends(clients)]


def item_view(row: RowMapping, stock: list[RowMapping]) -> ItemView:
    return ItemView(
        **{k: row[k] for k in ItemView.model_fields if k in row},
        on_hand=row["stock_quantity"],
        reserved=row["reserved_quantity"],
        available=row["stock_quantity"] - row["reserved_quantity"],
        locations=location_views(stock),
    )


@router.get("/items")
async def list_items(
    c: ClientsDep,
    category: Annotated[str | None, Query(max_length=100, pattern=CONTROL_FREE_PATTERN)] = None,
    alert_state: Annotated[Literal["ok", "low", "out", "over"] | None, Query()] = None,
    active: Annotated[bool | None, Query()] = None,
    q: Annotated[
        str | None,
        Query(max_length=100, pattern=CONTROL_FREE_PATTERN, description="Text in the SKU or name."),
    ] = None,
    after: Annotated[
        str | None,
        Query(max_length=64, pattern=CONTROL_FREE_PATTERN, description="The last SKU of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    location: Annotated[
        LocationCode | None, Query(description="Only items that have a stock row at this location.")
    ] = None,
) -> ItemPage:
    """Items in SKU order with filters, each with its stock per location; cursor-paged."""
    async with c.reads.connect() as conn:
        rows = await read_repo.list_items(
            conn,
            category=category,
            alert_state=alert_state,
            active=active,
            text=q,
            after=after,
            limit=limit,
            location=location,
        )
        stock = await read_repo.location_stock(conn, [r["sku"] for r in rows])
    items = [item_view(r, stock[r["sku"]]) for r in rows]
    return ItemPage(items=items, next_after=items[-1].sku if len(items) == limit else None)


@router.get("/alerts")
async def active_alerts(c: ClientsDep, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[AlertView]:
    """Items whose stock is low, out or over, and prices whose margin is under the floor; newest first."""
    async with c.reads.connect() as conn:
        stock = await read_repo.stock_alerts(conn, limit)
        margins = await price_reads.margin_alerts(conn, limit)
    alerts = [
        AlertView(
            kind="stock",
            sku=r["sku"],
            state=r["alert_state"],
            available=r["stock_quantity"] - r["reserved_quantity"],
            min_stock_level=r["min_stock_level"],
            max_stock_level=r["max_stock_level"],
            since=r["updated_at"],
        )
        for r in stock
    ] + [
        AlertView(
            kind="margin",
            sku=r["sku"],
            state="below",
            currency=r["currency"],
            effective_price=r["effective_price"],
            margin_pct=margin_pct(r["effective_price"], r["cost_price"])
            if r["effective_price"] is not None
            else None,
            since=r["updated_at"],
        )
        for r in margins
    ]
    return sorted(alerts, key=lambda a: a.since, reverse=True)[:limit]


@router.get("/items/{sku}", responses={404: {"description": "No such item."}})
async def get_item(sku: Annotated[Sku, Path()], c: ClientsDep) -> ItemView:
    """An item with its on-hand, reserved and available stock, in total and per location."""
    async with c.reads.connect() as conn:
        row = await read_repo.get_item(conn, sku)
        stock = await read_repo.location_stock(conn, [sku]) if row is not None else {}
    if row is None:
        raise Problem(404, "Item not found", f"no item with sku {sku}", type_="/problems/not-found")
    return item_view(row, stock[sku])


@router.get("/items/{sku}/ledger")
async def get_ledger(
    sku: Annotated[Sku, Path()],
    c: ClientsDep,
    after: AfterId = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    location: Annotated[
        LocationCode | None, Query(description="Only the movements at this location.")
    ] = None,
) -> LedgerPage:
    """Every stock movement of an item (at one location, if given), oldest first. A transfer is two rows,
    one at each location."""
    async with c.reads.connect() as conn:
        rows = await read_repo.get_ledger(conn, sku, after=after, limit=limit, location=location)
    entries = [LedgerEntryView(**{k: r[k] for k in LedgerEntryView.model_fields}) for r in rows]
    next_after = entries[-1].id if len(entries) == limit else None
    return LedgerPage(sku=sku, entries=entries, next_after=next_after)


@router.get("/commands/{command_id}")
async def get_command(command_id: uuid.UUID, c: ClientsDep, request: Request) -> CommandStatusView:
    """What became of a command: applied, rejected or dead-lettered (with the reason), or unknown (not
    applied yet). Only its sender and admins see its outcome; to anyone else it is `unknown`, as an id
    never sent is, so the answer tells nothing about other principals' commands."""
    principal: Principal = request.state.principal  # set by the router's role check
    actor = None if principal.has("admin") else principal.subject
    async with c.engine.connect() as conn:
        row = await read_repo.get_command(conn, command_id, actor=actor)
        letter = None if row is not None else await read_repo.get_dead_letter(conn, command_id, actor=actor)
    if row is not None:
        return CommandStatusView(**{k: row[k] for k in CommandStatusView.model_fields})
    if letter is not None:
        return CommandStatusView(command_id=command_id, status="dead_lettered", reason=letter["reason"])
    return CommandStatusView(command_id=command_id, status="unknown")
