"""Command intake: validate, wrap in the envelope, publish, answer 202 after the broker's ack."""

from __future__ import annotations

from typing import Annotated

from fastapi import Body, Path, Request
from fastapi.responses import Response

from api_edge.intake import CommandRouter, accept
from api_edge.requests import (
    AdjustStockRequest,
    CommandMeta,
    CountStockRequest,
    LocationLevelsRequest,
    ReasonRequest,
    ReceiveStockRequest,
    RegisterItemRequest,
    ReserveStockRequest,
    TransferStockRequest,
    UpdateItemDetailsRequest,
)
from contracts.common import LocationCode, ReservationId, Sku
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
    SetLocationLevels,
    TransferStock,
    UpdateItemDetails,
)
from contracts.topics import STOCK_COMMANDS

stock = CommandRouter(tags=["commands"], role="operator", topic=STOCK_COMMANDS)
router = stock.router

SkuPath = Annotated[Sku, Path(description="The item's SKU.")]
ReservationPath = Annotated[ReservationId, Path(description="The reservation's id.")]
LocationPath = Annotated[LocationCode, Path(description="The location's code.")]
# Commands whose fields are all optional accept an empty body.
OptionalMeta = Annotated[CommandMeta, Body(default_factory=CommandMeta)]
OptionalReason = Annotated[ReasonRequest, Body(default_factory=ReasonRequest)]


@stock.post("/items", RegisterItem)
async def register_item(body: RegisterItemRequest, request: Request) -> Response:
    """Register a new item."""
    return await accept(request, body.sku, body)


@stock.patch("/items/{sku}", UpdateItemDetails)
async def update_item(sku: SkuPath, body: UpdateItemDetailsRequest, request: Request) -> Response:
    """Change an item's details or stock levels (omitted fields keep their value)."""
    return await accept(request, sku, body)


@stock.post("/items/{sku}/deactivate", DeactivateItem)
async def deactivate_item(sku: SkuPath, body: OptionalReason, request: Request) -> Response:
    """Stop trading an item."""
    return await accept(request, sku, body)


@stock.post("/items/{sku}/reactivate", ReactivateItem)
async def reactivate_item(sku: SkuPath, body: OptionalReason, request: Request) -> Response:
    """Trade a deactivated item again."""
    return await accept(request, sku, body)


@stock.post("/items/{sku}/receipts", ReceiveStock)
async def receive_stock(sku: SkuPath, body: ReceiveStockRequest, request: Request) -> Response:
    """Add received units to an item's on-hand stock."""
    return await accept(request, sku, body)


@stock.post("/items/{sku}/adjustments", AdjustStock)
async def adjust_stock(sku: SkuPath, body: AdjustStockRequest, request: Request) -> Response:
    """Correct an item's on-hand stock by a signed delta with a reason code."""
    return await accept(request, sku, body)


@stock.post("/items/{sku}/counts", CountStock)
async def count_stock(sku: SkuPath, body: CountStockRequest, request: Request) -> Response:
    """Record a cycle count: set on-hand to the counted quantity."""
    return await accept(request, sku, body)


@stock.post("/items/{sku}/reservations", ReserveStock)
async def reserve_stock(sku: SkuPath, body: ReserveStockRequest, request: Request) -> Response:
    """Reserve units for an order; rejected when fewer are available."""
    return await accept(request, sku, body)


@stock.post("/items/{sku}/reservations/{reservation_id}/release", ReleaseReservation)
async def release_reservation(
    sku: SkuPath, reservation_id: ReservationPath, body: OptionalMeta, request: Request
) -> Response:
    """Give reserved units back to available stock."""
    return await accept(request, sku, body, reservation_id=reservation_id)


@stock.post("/items/{sku}/reservations/{reservation_id}/fulfil", FulfilReservation)
async def fulfil_reservation(
    sku: SkuPath, reservation_id: ReservationPath, body: OptionalMeta, request: Request
) -> Response:
    """The reserved units shipped."""
    return await accept(request, sku, body, reservation_id=reservation_id)


@stock.post("/items/{sku}/stock/transfer", TransferStock)
async def transfer_stock(sku: SkuPath, body: TransferStockRequest, request: Request) -> Response:
    """Move available units of an item from one location to another, as one command: rejected (nothing
    moves) when fewer are available at the source."""
    return await accept(request, sku, body)


@stock.put("/items/{sku}/locations/{location}/levels", SetLocationLevels)
async def set_location_levels(
    sku: SkuPath, location: LocationPath, body: LocationLevelsRequest, request: Request
) -> Response:
    """Set an item's own min/max stock levels at a location (null: follow the item's levels)."""
    return await accept(request, sku, body, location=location)
