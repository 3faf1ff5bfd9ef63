"""Price command intake: set a price, decide a pending change, cancel a scheduled window."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Body, Path, Request
from fastapi.responses import Response

from api_edge.intake import CommandRouter, accept
from api_edge.requests import DecisionRequest, SetPriceRequest
from contracts.common import Sku
from contracts.price_commands import ApprovePriceChange, CancelScheduledPrice, RejectPriceChange, SetPrice
from contracts.topics import PRICE_COMMANDS

prices = CommandRouter(tags=["price commands"], role="pricing", topic=PRICE_COMMANDS)
router = prices.router

SkuPath = Annotated[Sku, Path(description="The item's SKU.")]
ChangePath = Annotated[uuid.UUID, Path(description="The command_id of the SetPrice.")]
Decision = Annotated[DecisionRequest, Body(default_factory=DecisionRequest)]


@prices.post("/items/{sku}/prices", SetPrice)
async def set_price(sku: SkuPath, body: SetPriceRequest, request: Request) -> Response:
    """Set the price now or for a window; large moves and margins under the floor wait for approval."""
    return await accept(request, sku, body)


@prices.post("/items/{sku}/price-changes/{change_id}/approve", ApprovePriceChange)
async def approve_price_change(
    sku: SkuPath, change_id: ChangePath, body: Decision, request: Request
) -> Response:
    """Approve a pending price change."""
    return await accept(request, sku, body, change_id=change_id)


@prices.post("/items/{sku}/price-changes/{change_id}/reject", RejectPriceChange)
async def reject_price_change(
    sku: SkuPath, change_id: ChangePath, body: Decision, request: Request
) -> Response:
    """Reject a pending price change."""
    return await accept(request, sku, body, change_id=change_id)


@prices.post("/items/{sku}/price-windows/{change_id}/cancel", CancelScheduledPrice)
async def cancel_scheduled_price(
    sku: SkuPath, change_id: ChangePath, body: Decision, request: Request
) -> Response:
    """Cancel a scheduled price window (or end an active one now)."""
    return await accept(request, sku, body, change_id=change_id)
