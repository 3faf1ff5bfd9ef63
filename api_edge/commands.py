"""Command intake: validate, wrap in the envelope, publish, answer 202 after the broker's ack."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.responses import JSONResponse

from api_edge.auth import require
from api_edge.intake import POST as _POST
from api_edge.intake import accept, wait_param
from api_edge.requests import (
    AdjustStockRequest,
    CommandMeta,
    CountStockRequest,
    ReasonRequest,
    ReceiveStockRequest,
    RegisterItemRequest,
    ReserveStockRequest,
    UpdateItemDetailsRequest,
)
from contracts.common import ReservationId, Sku
from contracts.stock_commands import (
    AdjustStock,
    CountStock,
    DeactivateItem,
    FulfilReservation,
    ReactivateItem,
    ReceiveStock,
    RegisterItem,
    ReleaseReservation,
    ReserveStock,
    UpdateItemDetails,
)
from contracts.topics import STOCK_COMMANDS

router = APIRouter(
    prefix="/v1", tags=["commands"], dependencies=[Depends(require("operator")), Depends(wait_param)]
)

SkuPath = Annotated[Sku, Path(description="The item's SKU.")]
ReservationPath = Annotated[ReservationId, Path(description="The reservation's id.")]
# Commands whose fields are all optional accept an empty body.
OptionalMeta = Annotated[CommandMeta, Body(default_factory=CommandMeta)]
OptionalReason = Annotated[ReasonRequest, Body(default_factory=ReasonRequest)]


@router.post("/items", **_POST)
async def register_item(body: RegisterItemRequest, request: Request) -> JSONResponse:
    """Register a new item."""
    return await accept(request, STOCK_COMMANDS, RegisterItem, body.sku, body)


@router.patch("/items/{sku}", **_POST)
async def update_item(sku: SkuPath, body: UpdateItemDetailsRequest, request: Request) -> JSONResponse:
    """Change an item's details or stock levels (omitted fields keep their value)."""
    return await accept(request, STOCK_COMMANDS, UpdateItemDetails, sku, body)


@router.post("/items/{sku}/deactivate", **_POST)
async def deactivate_item(sku: SkuPath, body: OptionalReason, request: Request) -> JSONResponse:
    """Stop trading an item."""
    return await accept(request, STOCK_COMMANDS, DeactivateItem, sku, body)


@router.post("/items/{sku}/reactivate", **_POST)
async def reactivate_item(sku: SkuPath, body: OptionalReason, request: Request) -> JSONResponse:
    """Trade a deactivated item again."""
    return await accept(request, STOCK_COMMANDS, ReactivateItem, sku, body)


@router.post("/items/{sku}/receipts", **_POST)
async def receive_stock(sku: SkuPath, body: ReceiveStockRequest, request: Request) -> JSONResponse:
    """Add received units to an item's on-hand stock."""
    return await accept(request, STOCK_COMMANDS, ReceiveStock, sku, body)


@router.post("/items/{sku}/adjustments", **_POST)
async def adjust_stock(sku: SkuPath, body: AdjustStockRequest, request: Request) -> JSONResponse:
    """Correct an item's on-hand stock by a signed delta with a reason code."""
    return await accept(request, STOCK_COMMANDS, AdjustStock, sku, body)


@router.post("/items/{sku}/counts", **_POST)
async def count_stock(sku: SkuPath, body: CountStockRequest, request: Request) -> JSONResponse:
    """Record a cycle count: set on-hand to the counted quantity."""
    return await accept(request, STOCK_COMMANDS, CountStock, sku, body)


@router.post("/items/{sku}/reservations", **_POST)
async def reserve_stock(sku: SkuPath, body: ReserveStockRequest, request: Request) -> JSONResponse:
    """Reserve units for an order; rejected when fewer are available."""
    return await accept(request, STOCK_COMMANDS, ReserveStock, sku, body)


@router.post("/items/{sku}/reservations/{reservation_id}/release", **_POST)
async def release_reservation(
    sku: SkuPath, reservation_id: ReservationPath, body: OptionalMeta, request: Request
) -> JSONResponse:
    """Give reserved units back to available stock."""
    return await accept(request, STOCK_COMMANDS, ReleaseReservation, sku, body, reservation_id=reservation_id)


@router.post("/items/{sku}/reservations/{reservation_id}/fulfil", **_POST)
async def fulfil_reservation(
    sku: SkuPath, reservation_id: ReservationPath, body: OptionalMeta, request: Request
) -> JSONResponse:
    """The reserved units shipped."""
    return await accept(request, STOCK_COMMANDS, FulfilReservation, sku, body, reservation_id=reservation_id)
