"""Price command intake: set a price, decide a pending change, cancel a scheduled window."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Body, Path, Request
from fastapi.responses import Response

from api_edge import audit
from api_edge.intake import CommandRouter, accept
from api_edge.requests import DecisionRequest, SetPriceRequest
from api_edge.state import clients
from contracts.admin import AuditAction
from contracts.common import Sku
from contracts.price_commands import ApprovePriceChange, CancelScheduledPrice, RejectPriceChange, SetPrice
from contracts.topics import PRICE_COMMANDS
from db import audit_repo

# Decisions are recorded in the admin audit trail when the broker has accepted them, so they skip the
# plain-ASGI fast path (api_edge.fast_intake), which knows nothing of the audit trail.
AUDITED = frozenset(audit.DECISIONS)

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
    response = await accept(request, sku, body, change_id=change_id)
    await _record(request, "price_change.approve", sku, change_id, body)
    return response


@prices.post("/items/{sku}/price-changes/{change_id}/reject", RejectPriceChange)
async def reject_price_change(
    sku: SkuPath, change_id: ChangePath, body: Decision, request: Request
) -> Response:
    """Reject a pending price change."""
    response = await accept(request, sku, body, change_id=change_id)
    await _record(request, "price_change.reject", sku, change_id, body)
    return response


@prices.post("/items/{sku}/price-windows/{change_id}/cancel", CancelScheduledPrice)
async def cancel_scheduled_price(
    sku: SkuPath, change_id: ChangePath, body: Decision, request: Request
) -> Response:
    """Cancel a scheduled price window (or end an active one now)."""
    return await accept(request, sku, body, change_id=change_id)


async def _record(
    request: Request, action: AuditAction, sku: str, change_id: uuid.UUID, body: DecisionRequest
) -> None:
    """Who asked for the decision, once the broker accepted it. Not for an Idempotency-Key replay: that
    answers an earlier request, which was recorded then."""
    command_id = getattr(request.state, "command_id", None)
    if command_id is None:
        return
    async with clients(request).engine.begin() as conn:
        await audit_repo.record(
            conn, audit.decision_entry(request, action, sku, change_id, command_id, body.comment)
        )
