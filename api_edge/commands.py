"""Command intake: validate, wrap in the envelope, publish, answer 202 after the broker's ack."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response, status

from api_edge.publish import publish_command
from api_edge.requests import (
    Accepted,
    AdjustStockRequest,
    CommandMeta,
    ReceiveStockRequest,
    RegisterItemRequest,
)
from api_edge.state import Clients, clients
from contracts.common import Sku
from contracts.stock_commands import AdjustStock, ReceiveStock, RegisterItem, StockCommand

router = APIRouter(prefix="/v1", tags=["commands"])

SOURCE = "http-edge"
# Until authentication lands (issue 5) every HTTP command is attributed to this actor.
ANONYMOUS = "anonymous"

SkuPath = Annotated[Sku, Path(description="The item's SKU.")]
ClientsDep = Annotated[Clients, Depends(clients)]


def _envelope(meta: CommandMeta, sku: str) -> dict[str, Any]:
    return {
        "command_id": meta.command_id or uuid.uuid4(),
        "sku": sku,
        "issued_at": datetime.now(UTC),
        "actor": ANONYMOUS,
        "source": SOURCE,
        "expected_version": meta.expected_version,
    }


async def _accept(c: Clients, command: StockCommand, response: Response) -> Accepted:
    await publish_command(c, command)
    url = f"/v1/commands/{command.command_id}"
    response.headers["Location"] = url
    return Accepted(command_id=command.command_id, status_url=url)


_ACCEPTED: dict[int | str, dict[str, Any]] = {
    503: {"description": "The broker did not acknowledge; nothing was accepted. Retry later."}
}


@router.post("/items", status_code=status.HTTP_202_ACCEPTED, responses=_ACCEPTED)
async def register_item(body: RegisterItemRequest, c: ClientsDep, response: Response) -> Accepted:
    """Register a new item."""
    fields = body.model_dump(exclude={"command_id", "expected_version", "sku"})
    command = RegisterItem(**_envelope(body, body.sku), **fields)
    return await _accept(c, command, response)


@router.post("/items/{sku}/receipts", status_code=status.HTTP_202_ACCEPTED, responses=_ACCEPTED)
async def receive_stock(
    sku: SkuPath, body: ReceiveStockRequest, c: ClientsDep, response: Response
) -> Accepted:
    """Add received units to an item's on-hand stock."""
    command = ReceiveStock(**_envelope(body, sku), quantity=body.quantity)
    return await _accept(c, command, response)


@router.post("/items/{sku}/adjustments", status_code=status.HTTP_202_ACCEPTED, responses=_ACCEPTED)
async def adjust_stock(sku: SkuPath, body: AdjustStockRequest, c: ClientsDep, response: Response) -> Accepted:
    """Correct an item's on-hand stock by a signed delta with a reason code."""
    command = AdjustStock(
        **_envelope(body, sku), delta=body.delta, reason_code=body.reason_code, note=body.note
    )
    return await _accept(c, command, response)
