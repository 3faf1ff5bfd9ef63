"""What every command endpoint does: wrap the body in the envelope, publish, answer 202 after the ack;
with an Idempotency-Key, answer a replay from the record; with `?wait=`, answer the outcome if it comes."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, TypeVar, get_args, get_origin, get_type_hints

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter
from starlette.routing import compile_path

from api_edge import command_ids, idempotency
from api_edge.auth import actor, require
from api_edge.bodies import BoundedJsonRoute
from api_edge.idempotency import Stored
from api_edge.publish import publish_command
from api_edge.requests import Accepted, CommandMeta
from api_edge.state import Clients, clients
from contracts.price_commands import PriceCommand
from contracts.stock_commands import StockCommand
from contracts.topics import Topic
from db import read_repo
from infra.credentials import Role

SOURCE = "http-edge"
PREFIX = "/v1"
_E = TypeVar("_E", bound=Callable[..., Coroutine[Any, Any, Response]])
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
    c: Clients, command_id: uuid.UUID, principal: str, waiter: asyncio.Future[None], wait: float
) -> Accepted | None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiter), wait)
    waiter.cancel()
    async with c.engine.connect() as conn:
        row = await read_repo.get_command(conn, command_id, actor=principal)
    if row is None:
        return None
    return Accepted(
        command_id=command_id,
        status=row["status"],
        reason=row["reason"],
        status_url=f"/v1/commands/{command_id}",
    )


def new_command(
    route: CommandRoute,
    sku: str,
    principal: str,
    body: CommandMeta,
    default_id: uuid.UUID | None,
    id_key: hmac.HMAC,
    **fields: Any,
) -> StockCommand | PriceCommand:
    """The command a request asks for: the body's fields, the path's, and what the edge fills in. Its id
    is never one the client chose: a client's `command_id` is scoped to the principal
    (`api_edge.command_ids`); without one it is `default_id` (from an Idempotency-Key) or random."""
    if body.command_id is not None:
        command_id = command_ids.from_client(id_key, principal, body.command_id)
    else:
        command_id = default_id or uuid.uuid4()
    return route.kind(
        command_id=command_id,
        sku=sku,
        issued_at=datetime.now(UTC),
        actor=principal,
        source=SOURCE,
        expected_version=body.expected_version,
        # exclude_unset keeps an explicit null (clear this field) apart from an omitted one.
        **body.model_dump(exclude_unset=True, exclude={"command_id", "expected_version", "sku"}),
        **fields,
    )


def answer(command_id: uuid.UUID, outcome: Accepted | None = None) -> tuple[int, Accepted]:
    if outcome is not None:
        return status.HTTP_200_OK, outcome
    return status.HTTP_202_ACCEPTED, Accepted(command_id=command_id, status_url=f"/v1/commands/{command_id}")


def answer_response(code: int, body: Accepted) -> Response:
    return Response(
        body.model_dump_json(), code, headers={"Location": body.status_url}, media_type="application/json"
    )


async def accept(request: Request, sku: str, body: CommandMeta, **fields: Any) -> Response:
    """The endpoint's whole work, for the command its `CommandRouter` declaration names."""
    route = _ROUTES[request.scope["endpoint"]]
    c = clients(request)
    principal = actor(request)
    id_key = command_ids.key(c.settings)
    claim, replay = await idempotency.claim(c.redis, request, principal, c.settings.idempotency_ttl_s, id_key)
    if replay is not None:
        headers = {"Location": replay.location} if replay.location else None
        return JSONResponse(replay.body, status_code=replay.status, headers=headers)
    waiter: asyncio.Future[None] | None = None
    try:
        default_id = claim.command_id if claim else None
        command = new_command(route, sku, principal, body, default_id, id_key, **fields)
        wait: float = getattr(request.state, "wait", 0)
        deadline = asyncio.get_running_loop().time() + wait
        waiter = await c.hub.waiter(str(command.command_id), wait) if wait else None
        await publish_command(c, command, route.topic)
    except BaseException:
        if waiter is not None:
            waiter.cancel()  # leaves the hub's waiters, so its subscription can go idle
        if claim is not None:
            await idempotency.release(c.redis, claim)
        raise
    request.state.command_id = str(command.command_id)  # for the access line
    if waiter is not None:  # what is left of the wait, after the subscription and the publish
        left = deadline - asyncio.get_running_loop().time()
        outcome = await _outcome(c, command.command_id, principal, waiter, left)
    else:
        outcome = None
    code, body_out = answer(command.command_id, outcome)
    if claim is not None:
        stored = Stored(code, body_out.model_dump(mode="json"), body_out.status_url)
        await idempotency.complete(c.redis, claim, stored, c.settings.idempotency_ttl_s)
    return answer_response(code, body_out)


@dataclass(frozen=True, slots=True)
class CommandRoute:
    """One command endpoint: what `accept` publishes for it, and what the plain-ASGI fast path
    (`api_edge.fast_intake`) needs to answer it without FastAPI."""

    method: str
    path: str  # the full template, e.g. /v1/items/{sku}/receipts; also the metrics label
    kind: type[StockCommand] | type[PriceCommand]
    topic: Topic
    role: Role
    body: type[CommandMeta]
    params: dict[str, TypeAdapter[Any]]  # each path parameter but the SKU, validated as the endpoint does
    sku: TypeAdapter[Any] | None  # None: the SKU is in the body (registration)


_ROUTES: dict[Callable[..., Any], CommandRoute] = {}


class CommandRouter:
    """The command endpoints of one topic and role: an APIRouter (for FastAPI and the OpenAPI document)
    whose every route is also recorded as a `CommandRoute`."""

    def __init__(self, *, tags: list[str | Enum], role: Role, topic: Topic) -> None:
        self.router = APIRouter(
            prefix=PREFIX,
            tags=tags,
            dependencies=[Depends(require(role)), Depends(wait_param)],
            route_class=BoundedJsonRoute,
        )
        self.role = role
        self.topic = topic
        self.routes: list[CommandRoute] = []

    def post(self, path: str, kind: type[StockCommand] | type[PriceCommand]) -> Callable[[_E], _E]:
        return self._route("POST", path, kind)

    def patch(self, path: str, kind: type[StockCommand] | type[PriceCommand]) -> Callable[[_E], _E]:
        return self._route("PATCH", path, kind)

    def put(self, path: str, kind: type[StockCommand] | type[PriceCommand]) -> Callable[[_E], _E]:
        return self._route("PUT", path, kind)

    def _route(
        self, method: str, path: str, kind: type[StockCommand] | type[PriceCommand]
    ) -> Callable[[_E], _E]:
        def register(endpoint: _E) -> _E:
            hints = get_type_hints(endpoint, include_extras=True)
            body = hints["body"]
            model = get_args(body)[0] if get_origin(body) is Annotated else body
            names = compile_path(PREFIX + path)[2]  # the path's parameters, as Starlette parses them
            route = CommandRoute(
                method=method,
                path=PREFIX + path,
                kind=kind,
                topic=self.topic,
                role=self.role,
                body=model,
                params={name: TypeAdapter(hints[name]) for name in names if name != "sku"},
                sku=TypeAdapter(hints["sku"]) if "sku" in names else None,
            )
            self.routes.append(route)
            _ROUTES[endpoint] = route
            self.router.add_api_route(path, endpoint, methods=[method], **POST)
            return endpoint

        return register
