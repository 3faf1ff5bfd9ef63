"""The command routes' common request, answered in plain ASGI; every other request goes to FastAPI.

One command per POST is the edge's hot path. FastAPI's routing, dependency solving, body handling and
response machinery cost about four times the rest of such a request (measured on the 2-core box: a bare
POST with a body model 128 us of CPU, with the edge's four dependencies 209 us; raw ASGI 29 us). This
middleware answers the request that matters for throughput: a bearer token that verifies and holds the
route's role, a JSON body that validates, no query string, no Idempotency-Key. It runs the same code the
FastAPI endpoint runs (`intake.new_command`, the rate limits, `publish_command`, `intake.answer_response`).

Everything else is handed to FastAPI untouched, with the body it read replayed: API keys, `?wait=`,
idempotency keys, requests from browsers (an Origin header: FastAPI's CORS middleware answers those), and
every request that would fail authentication, authorisation or validation, so FastAPI stays the one place
that renders those errors. It runs outside FastAPI (`app.create_edge`), so an unexpected error on this
path is rendered here, in the same problem shape. The decision is made before anything with an
effect (the rate-limit count, the publish): a handed-over request is counted once, by FastAPI.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Sequence

import structlog
from fastapi import FastAPI
from prometheus_client import Counter
from pydantic import ValidationError
from starlette.requests import HTTPConnection
from starlette.routing import compile_path
from starlette.types import Message, Receive, Scope, Send

from api_edge import command_ids
from api_edge.auth import Principal, decode_access_token
from api_edge.intake import CommandRoute, answer, answer_response, new_command
from api_edge.problems import Problem, problem_response, render
from api_edge.publish import publish_command
from api_edge.state import Clients

log = structlog.get_logger("invmon.edge")

ROUTED = Counter(
    "invmon_edge_fast_intake_total",
    "Command requests answered by the plain-ASGI path (answered) or handed to FastAPI (handed_over).",
    ["outcome"],
)
_ANSWERED, _HANDED_OVER = ROUTED.labels("answered"), ROUTED.labels("handed_over")
MAX_BODY_BYTES = 64 * 1024  # a single command is well under 4 KiB; larger bodies take FastAPI's path
_JSON = b"application/json"


def _handed_over(messages: Sequence[Message], receive: Receive) -> Receive:
    """`receive` for FastAPI: the messages this middleware already took, then the server's."""
    pending = deque(messages)

    async def again() -> Message:
        return pending.popleft() if pending else await receive()

    return again


class FastIntake:
    def __init__(self, app: FastAPI, routes: Sequence[CommandRoute]) -> None:
        self.app = app
        self._routes: dict[str, list[tuple[re.Pattern[str], CommandRoute]]] = {}
        for route in routes:
            self._routes.setdefault(route.method, []).append((compile_path(route.path)[0], route))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in self._routes:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        candidates = self._routes[scope["method"]]
        found = next(((route, m) for pattern, route in candidates if (m := pattern.match(path))), None)
        if found is None:
            await self.app(scope, receive, send)
            return
        route, match = found
        clients: Clients = self.app.state.clients
        principal = None if scope["query_string"] else self._principal(scope, clients, route)
        if principal is None:
            _HANDED_OVER.inc()
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = await self._body(receive, messages)
        try:
            if body is None:
                raise ValueError("not a complete request body")
            meta = route.body.model_validate_json(body)
            fields = {name: adapter.validate_python(match[name]) for name, adapter in route.params.items()}
            # Without a SKU in the path (registration) it is the body's, a field of that route's model only.
            sku = meta.sku if route.sku is None else route.sku.validate_python(match["sku"])  # type: ignore[attr-defined]
            command = new_command(
                route, sku, principal.subject, meta, None, command_ids.key(clients.settings), **fields
            )
        except (ValueError, ValidationError):  # FastAPI answers it, with its validation problem
            _HANDED_OVER.inc()
            await self.app(scope, _handed_over(messages, receive), send)
            return
        _ANSWERED.inc()
        scope["route"] = route  # the metrics label (a 429 and a 503 too): the template FastAPI's route has
        scope["app"] = self.app
        try:
            await clients.limits.check(HTTPConnection(scope), None, principal.subject)
            await publish_command(clients, command, route.topic)
        except Problem as problem:
            await render(problem, path)(scope, receive, send)
            return
        except Exception:
            log.exception("unhandled_error", path=path)
            await problem_response(path, 500, "Internal Server Error")(scope, receive, send)
            return
        scope.setdefault("state", {})["command_id"] = str(command.command_id)
        await answer_response(*answer(command.command_id))(scope, receive, send)

    @staticmethod
    def _principal(scope: Scope, clients: Clients, route: CommandRoute) -> Principal | None:
        """The caller, when the request is one this path answers; None hands it to FastAPI."""
        token: bytes | None = None
        json_body = seen_type = False
        for name, value in scope["headers"]:
            # The first of a repeated header counts, as Starlette's `Headers.get` has it.
            if name == b"authorization" and token is None:
                token = value
            elif name == b"content-type" and not seen_type:
                seen_type = True
                json_body = value == _JSON or value.startswith(_JSON + b";")
            elif name in (b"idempotency-key", b"x-api-key", b"origin"):
                return None
        if not json_body or token is None or token[:7].lower() != b"bearer ":
            return None
        bearer = token[7:].decode("latin-1")  # all after the first space, as OAuth2PasswordBearer takes it
        if bearer.startswith("imk_"):  # an API key sent as a bearer token: a database lookup
            return None
        try:
            principal, _ = decode_access_token(clients.settings, bearer)
        except Problem:
            return None
        return principal if principal.has(route.role) else None

    @staticmethod
    async def _body(receive: Receive, messages: list[Message]) -> bytes | None:
        """The whole body, or None (too large, or the client went away) with what was read in `messages`."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
