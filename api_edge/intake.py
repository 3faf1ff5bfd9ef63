"""What every command endpoint does: wrap the body in the envelope, publish, answer 202 after the ack;
with an Idempotency-Key, answer a replay from the record; with `?wait=`, answer the outcome if it comes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Request, status
from fastapi.responses import JSONResponse

from api_edge import idempotency
from api_edge.auth import actor
from api_edge.idempotency import Stored
from api_edge.publish import publish_command
from api_edge.requests import Accepted, CommandMeta
from api_edge.state import Clients, clients
from contracts.price_commands import PriceCommand
from contracts.stock_commands import StockCommand
from contracts.topics import Topic
from db import read_repo

SOURCE = "http-edge"
MAX_WAIT_S = 30.0

POST: dict[str, Any] = {
    "status_code": status.HTTP_202_ACCEPTED,
    "response_model": Accepted,
    "responses": {
        200: {"model": Accepted, "description": "With `?wait=`: applied or rejected within the wait."},
        409: {"description": "A request with this Idempotency-Key is still in progress."},
        422: {"description": "Invalid request, or an Idempotency-Key reused with another request."},
        503: {"description": "The broker did not acknowledge; nothing was accepted. Retry later."},
    },
}


async def wait_param(  # async: a plain def would cost a thread-pool hop per request
    request: Request,
    wait: Annotated[
        float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for the outcome (200) before 202.")
    ] = 0,
) -> None:
    request.state.wait = wait


async def _outcome(
    c: Clients, command_id: uuid.UUID, waiter: asyncio.Future[None], wait: float
) -> Accepted | None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiter), wait)
    waiter.cancel()
    async with c.engine.connect() as conn:
        row = await read_repo.get_command(conn, command_id)
    if row is None:
        return None
    return Accepted(
        command_id=command_id,
        status=row["status"],
        reason=row["reason"],
        status_url=f"/v1/commands/{command_id}",
    )


async def accept(
    request: Request,
    topic: Topic,
    kind: type[StockCommand] | type[PriceCommand],
    sku: str,
    body: CommandMeta,
    **fields: Any,
) -> JSONResponse:
    c = clients(request)
    principal = actor(request)
    claim, replay = await idempotency.claim(c.redis, request, principal, c.settings.idempotency_ttl_s)
    if replay is not None:
        headers = {"Location": replay.location} if replay.location else None
        return JSONResponse(replay.body, status_code=replay.status, headers=headers)
    try:
        command = kind(
            command_id=body.command_id or (claim.command_id if claim else uuid.uuid4()),
            sku=sku,
            issued_at=datetime.now(UTC),
            actor=principal,
            source=SOURCE,
            expected_version=body.expected_version,
            # exclude_unset keeps an explicit null (clear this field) apart from an omitted one.
            **body.model_dump(exclude_unset=True, exclude={"command_id", "expected_version", "sku"}),
            **fields,
        )
        wait: float = getattr(request.state, "wait", 0)
        waiter = c.hub.waiter(str(command.command_id)) if wait else None
        await publish_command(c, command, topic)
    except BaseException:
        if claim is not None:
            await idempotency.release(c.redis, claim)
        raise
    request.state.command_id = str(command.command_id)  # for the access line
    url = f"/v1/commands/{command.command_id}"
    answer = Accepted(command_id=command.command_id, status_url=url)
    code = status.HTTP_202_ACCEPTED
    if waiter is not None and (outcome := await _outcome(c, command.command_id, waiter, wait)) is not None:
        answer, code = outcome, status.HTTP_200_OK
    if claim is not None:
        stored = Stored(code, answer.model_dump(mode="json"), url)
        await idempotency.complete(c.redis, claim, stored, c.settings.idempotency_ttl_s)
    return JSONResponse(answer.model_dump(mode="json"), status_code=code, headers={"Location": url})
