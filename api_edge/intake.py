"""What every command endpoint does: wrap the body in the envelope, publish, answer 202 after the ack."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response, status

from api_edge.auth import actor
from api_edge.publish import publish_command
from api_edge.requests import Accepted, CommandMeta
from api_edge.state import clients
from contracts.price_commands import PriceCommand
from contracts.stock_commands import StockCommand
from contracts.topics import Topic

SOURCE = "http-edge"

POST: dict[str, Any] = {
    "status_code": status.HTTP_202_ACCEPTED,
    "responses": {503: {"description": "The broker did not acknowledge; nothing was accepted. Retry later."}},
}


async def accept(
    request: Request,
    response: Response,
    topic: Topic,
    kind: type[StockCommand] | type[PriceCommand],
    sku: str,
    body: CommandMeta,
    **fields: Any,
) -> Accepted:
    command = kind(
        command_id=body.command_id or uuid.uuid4(),
        sku=sku,
        issued_at=datetime.now(UTC),
        actor=actor(request),
        source=SOURCE,
        expected_version=body.expected_version,
        # exclude_unset keeps an explicit null (clear this field) apart from an omitted one.
        **body.model_dump(exclude_unset=True, exclude={"command_id", "expected_version", "sku"}),
        **fields,
    )
    await publish_command(clients(request), command, topic)
    url = f"/v1/commands/{command.command_id}"
    response.headers["Location"] = url
    return Accepted(command_id=command.command_id, status_url=url)
