"""Batch intake: many commands in one request (a JSON array or NDJSON), validated one by one. Valid ones
are published with their own SKU keys; invalid ones are reported by index and publish nothing.

Give each command a `command_id` (or send an Idempotency-Key, from which the ids derive) so a retried batch
is applied once. As on the single routes, the published ids are derived from those and the caller
(`api_edge.command_ids`); the answer names them. Commands only the workers' schedulers issue, and a
`command_id` repeated within the batch, are refused by index."""

from __future__ import annotations

import contextlib
import hmac
import os
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple, Union, get_args

import orjson
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from api_edge import audit, command_ids, idempotency
from api_edge.auth import actor, require
from api_edge.bodies import JsonBeyondLimits, loads
from api_edge.idempotency import Stored
from api_edge.intake import SOURCE
from api_edge.problems import Problem
from api_edge.publish import broker_unavailable, send_all
from api_edge.state import Clients, clients
from contracts.price_commands import ActivateScheduledPrice, ExpireScheduledPrice, PriceCommand
from contracts.stock_commands import ExpireReservation, StockCommand
from contracts.topics import PRICE_COMMANDS, STOCK_COMMANDS, Topic


class BatchAccepted(BaseModel):
    accepted: int
    command_ids: list[dict[str, Any]] = Field(
        description="`{index, command_id}` of every published command, with the id it was published under"
        " (derived from the caller and its `command_id` or Idempotency-Key, else random): read its outcome"
        " at `/v1/commands/{command_id}`."
    )
    errors: list[dict[str, Any]] = Field(description="`{index, errors}` of every refused command.")


async def _items(request: Request, max_count: int) -> list[Any]:
    # Bounded while it streams: api_edge.bodies.BodyGuard holds these paths to INVMON_BATCH_MAX_BYTES.
    body = await request.body()
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    try:
        if kind == "application/x-ndjson":
            items = [loads(line) for line in body.splitlines() if line.strip()]
        else:
            items = loads(body)
    except JsonBeyondLimits as error:
        raise Problem(422, "Malformed batch", f"JSON beyond the parser's limits: {error}") from error
    except ValueError as error:
        raise Problem(400, "Malformed batch", f"cannot parse the body as {kind}: {error}") from error
    if not isinstance(items, list):
        raise Problem(422, "Malformed batch", "the body must be a JSON array (or NDJSON lines)")
    if len(items) > max_count:
        raise Problem(413, "Batch too large", f"at most {max_count} commands")
    return items


def _random_ids(count: int) -> list[str]:
    """`count` version-4 UUID texts from ONE random draw: 90 random bits shared by the batch, then a
    random 32-bit start counted up per command. Ids of one batch differ in their counter; two batches
    share ids only if their 90 random bits match. uuid.uuid4() per command (a syscall and a UUID object
    each) was a quarter of a batch's CPU, slicing one random text per command still ~7 %."""
    raw = os.urandom(16).hex()
    variant = "89ab"[int(raw[16], 16) & 3]
    prefix = f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{variant}{raw[17:20]}-{raw[20:24]}"
    start = int(raw[24:], 16)
    return [f"{prefix}{(start + i) & 0xFFFFFFFF:08x}" for i in range(count)]


class _Checked(NamedTuple):
    commands: list[Any]  # the valid commands, in the batch's order
    accepted: list[dict[str, Any]]  # `{index, command_id}` of each
    errors: list[dict[str, Any]]  # `{index, errors}` of each invalid item


def _own_id(value: Any, id_key: hmac.HMAC, principal: str) -> uuid.UUID | None:
    """The published id of a `command_id` a client sent; None when it is no UUID."""
    try:
        client_id = uuid.UUID(value) if type(value) is str else None
    except ValueError:
        return None
    return None if client_id is None else command_ids.from_client(id_key, principal, client_id)


def _error(loc: list[Any], msg: str) -> list[dict[str, Any]]:
    return [{"loc": loc, "msg": msg}]


def _validate(
    items: list[Any],
    adapter: TypeAdapter[Any],
    principal: str,
    idempotency_id: uuid.UUID | None,
    id_key: hmac.HMAC,
) -> _Checked:
    """The whole list is validated in ONE pydantic call (its per-call overhead was half of a batch's CPU);
    only when that fails is each item validated on its own, to report errors by index. The parsed items
    are completed in place (they are this request's own objects): copying each into a new dict cost more."""
    n = len(items)
    ids = [str(uuid.uuid5(idempotency_id, str(i))) for i in range(n)] if idempotency_id else _random_ids(n)
    edge_fields = {"issued_at": datetime.now(UTC), "actor": principal, "source": SOURCE}
    refused: dict[int, list[dict[str, Any]]] = {}  # by index: errors found before validation
    first: dict[uuid.UUID, int] = {}  # the index of each published id derived from a client's command_id
    for index, item in enumerate(items):
        if type(item) is dict:
            if "command_id" in item:
                published = _own_id(item["command_id"], id_key, principal)
                if published is None:
                    refused[index] = _error(["command_id"], "Input should be a valid UUID")
                elif (earlier := first.setdefault(published, index)) != index:
                    refused[index] = _error(
                        ["command_id"], f"repeats the command_id of the command at index {earlier}"
                    )
                else:
                    item["command_id"] = published  # a UUID: pydantic takes it as is, no text to parse
                    ids[index] = str(published)
            else:
                item["command_id"] = ids[index]
            item.update(edge_fields)
    if not refused:
        with contextlib.suppress(ValidationError):
            commands = adapter.validate_python(items)  # adapter: a list of the topic's commands
            accepted = [{"index": i, "command_id": command_id} for i, command_id in enumerate(ids)]
            return _Checked(commands, accepted, [])
    checked = _Checked([], [], [])
    for index, item in enumerate(items):
        if index in refused or type(item) is not dict:
            errors = refused.get(index) or _error([], "each command must be an object")
            checked.errors.append({"index": index, "errors": errors})
            continue
        try:
            [command] = adapter.validate_python([item])
        except ValidationError as error:
            details = [{"loc": list(e["loc"])[1:], "msg": e["msg"]} for e in error.errors(include_url=False)]
            checked.errors.append({"index": index, "errors": details})
        else:
            checked.commands.append(command)
            checked.accepted.append({"index": index, "command_id": str(command.command_id)})
    return checked


async def _batch(request: Request, topic: Topic, adapter: TypeAdapter[Any]) -> Response:
    c: Clients = clients(request)
    principal = actor(request)
    id_key = command_ids.key(c.settings)
    claim, replay = await idempotency.claim(c.redis, request, principal, c.settings.idempotency_ttl_s, id_key)
    if replay is not None:
        return JSONResponse(replay.body, status_code=replay.status)
    try:
        items = await _items(request, c.settings.batch_max_commands)
        checked = _validate(items, adapter, principal, claim.command_id if claim else None, id_key)
        await _publish(c, topic, checked.commands)
    except BaseException:
        if claim is not None:
            await idempotency.release(c.redis, claim)
        raise
    await audit.record_decisions(request, checked.commands)  # price approvals are admin actions
    # The BatchAccepted shape, built as plain JSON data: a model per answer costs ~3.5 us per command.
    errors = checked.errors
    answer = {"accepted": len(checked.commands), "command_ids": checked.accepted, "errors": errors}
    if errors and not checked.commands:
        if claim is not None:
            await idempotency.release(c.redis, claim)
        raise Problem(
            422,
            "Request validation failed",
            f"none of the {len(errors)} command(s) is valid; nothing was published",
            type_="/problems/validation",
            extra={"errors": errors},
        )
    if claim is not None:
        await idempotency.complete(c.redis, claim, Stored(202, answer, None), c.settings.idempotency_ttl_s)
    # orjson: the answer lists every command id, and json.dumps of it was ~7 % of a batch's CPU.
    return Response(orjson.dumps(answer), 202, media_type="application/json")


async def _publish(c: Clients, topic: Topic, commands: list[Any]) -> None:
    try:
        await send_all(c, topic, commands)
    except (KafkaError, OSError, TimeoutError) as error:
        raise broker_unavailable(
            "Not every command was confirmed; retry with the same command ids or Idempotency-Key."
        ) from error


_BATCH_DOC: dict[str, Any] = {
    "status_code": 202,
    "response_model": BatchAccepted,
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        }
    },
    "responses": {
        413: {"description": "Too many commands or too many bytes."},
        503: {"description": "Broker down."},
    },
}

router = APIRouter(prefix="/v1/commands", tags=["batch"])
# Commands the workers' schedulers issue when a reservation or price window is due; no client sends them.
SCHEDULER_ONLY: tuple[type[Any], ...] = (ExpireReservation, ActivateScheduledPrice, ExpireScheduledPrice)


def _sendable(commands: Any) -> Any:
    """A list of the discriminated union `commands` without the scheduler's commands: one of those in a
    batch is refused like an unknown `type`, by index, at no extra cost."""
    union, *metadata = get_args(commands)
    kinds = tuple(kind for kind in get_args(union) if kind not in SCHEDULER_ONLY)
    sendable: Any = Union[kinds]  # noqa: UP007 (a Union of a tuple of types)
    return list[Annotated[(sendable, *metadata)]]


_STOCK_LIST: TypeAdapter[list[StockCommand]] = TypeAdapter(_sendable(StockCommand))
_PRICE_LIST: TypeAdapter[list[PriceCommand]] = TypeAdapter(_sendable(PriceCommand))


@router.post("/stock:batch", dependencies=[Depends(require("operator"))], **_BATCH_DOC)
async def stock_batch(request: Request) -> Response:
    """Stock commands (each with `type`, `sku` and its fields; the edge sets actor, source, issued_at).
    `expire_reservation` is the stock worker's own command: refused here."""
    return await _batch(request, STOCK_COMMANDS, _STOCK_LIST)


@router.post("/price:batch", dependencies=[Depends(require("pricing"))], **_BATCH_DOC)
async def price_batch(request: Request) -> Response:
    """Price commands, like the stock batch. `activate_scheduled_price` and `expire_scheduled_price` are
    the price worker's own commands: refused here."""
    return await _batch(request, PRICE_COMMANDS, _PRICE_LIST)


PATHS = tuple(route.path for route in router.routes if isinstance(route, APIRoute))
