"""Price command intake: set a price, decide a pending change, cancel a scheduled window."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request
from fastapi.responses import JSONResponse

from api_edge.auth import require
from api_edge.intake import POST, accept, wait_param
from api_edge.requests import DecisionRequest, SetPriceRequest
from contracts.common import Sku
from contracts.price_commands import ApprovePriceChange, CancelScheduledPrice, RejectPriceChange, SetPrice
from contracts.topics import PRICE_COMMANDS

router = APIRouter(
    prefix="/v1", tags=["price commands"], dependencies=[Depends(require("pricing")), Depends(wait_param)]
)

SkuPath = Annotated[Sku, Path(description="The item's SKU.")]
ChangePath = Annotated[uuid.UUID, Path(description="The command_id of the SetPrice.")]
Decision = Annotated[DecisionRequest, Body(default_factory=DecisionRequest)]


@router.post("/items/{sku}/prices", **POST)
async def set_price(sku: SkuPath, body: SetPriceRequest, request: Request) -> JSONResponse:
    """Set the price now or for a window; large moves and margins under the floor wait for approval."""
    return await accept(request, PRICE_COMMANDS, SetPrice, sku, body)


@router.post("/items/{sku}/price-changes/{change_id}/approve", **POST)
async def approve_price_change(
    sku: SkuPath, change_id: ChangePath, body: Decision, request: Request
) -> JSONResponse:
    """Approve a pending price change."""
    return await accept(request, PRICE_COMMANDS, ApprovePriceChange, sku, body, change_id=change_id)


@router.post("/items/{sku}/price-changes/{change_id}/reject", **POST)
async def reject_price_change(
    sku: SkuPath, change_id: ChangePath, body: Decision, request: Request
) -> JSONResponse:
    """Reject a pending price change."""
    return await accept(request, PRICE_COMMANDS, RejectPriceChange, sku, body, change_id=change_id)


@router.post("/items/{sku}/price-windows/{change_id}/cancel", **POST)
async def cancel_scheduled_price(
    sku: SkuPath, change_id: ChangePath, body: Decision, request: Request
) -> JSONResponse:
    """Cancel a scheduled price window (or end an active one now)."""
    return await accept(request, PRICE_COMMANDS, CancelScheduledPrice, sku, body, change_id=change_id)
