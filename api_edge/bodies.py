"""Request bodies: bounded before they are read, parsed with bounded depth and number size.

`BodyGuard` is the outermost layer of the edge (inside the access line), for the plain-ASGI fast path and
FastAPI alike:
- A request to a route that needs a role, without a credential that could pass, reaches the app with an
  empty body: authentication refuses it (401, counted against the client IP as every failed attempt is)
  and nothing the client sent is read. FastAPI reads and parses a body before it runs an endpoint's
  dependencies, so the check cannot wait for them.
- A declared Content-Length over the route's limit gets 413 before the app runs; a body without one is
  counted while it streams, and the chunk that crosses the limit raises `BodyTooLarge` (413) to whoever
  reads it. The limit: `INVMON_BATCH_MAX_BYTES` on the batch routes, `INVMON_EDGE_MAX_BODY_BYTES` on every
  other route.

`loads` parses JSON with pydantic-core (jiter): nesting deeper than its 200 levels and integers beyond its
range are errors, where the standard library's parser raises RecursionError, or a ValueError for an integer
of more than 4,300 digits, which nobody caught (a 500).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import pydantic_core
from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_edge.auth import decode_access_token
from api_edge.problems import Problem, problem_response
from infra.settings import Settings

TOO_LARGE = "Request body too large"
# pydantic-core's words for JSON that is well-formed but beyond its limits (tests/unit pins them).
_LIMIT_MESSAGES = ("recursion limit exceeded", "number out of range")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_EMPTY: Message = {"type": "http.request", "body": b"", "more_body": False}


class JsonBeyondLimits(ValueError):
    """Well-formed JSON nested too deeply or with a number too large to hold."""


def loads(body: bytes | bytearray | str) -> Any:
    """JSON text to Python data; JsonBeyondLimits or ValueError (not JSON) when it cannot be."""
    try:
        return pydantic_core.from_json(body, allow_inf_nan=False, cache_strings="keys")
    except ValueError as error:
        if any(message in str(error) for message in _LIMIT_MESSAGES):
            raise JsonBeyondLimits(str(error)) from error
        if "hex escape" in str(error):  # pydantic-core's words for a lone surrogate too
            hint = "a \\u escape takes 4 hex digits; a surrogate must be paired"
            raise ValueError(f"{error} ({hint})") from error
        raise


class BodyTooLarge(HTTPException):
    """Raised from `receive`: an HTTPException, so FastAPI's body reading lets it through to the problem
    handler (any other error there becomes a 400) and `BodyGuard` renders it when no app did."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, TOO_LARGE)
        self.limit = limit


class _BoundedJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads(await self.body())
            except ValueError as error:  # FastAPI answers a JSONDecodeError with its 422 json_invalid
                raise json.JSONDecodeError(str(error), "", 0) from error
        return self._json


class BoundedJsonRoute(APIRoute):
    """A route whose JSON body is parsed by `loads`, not the standard library's parser."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            return await handler(_BoundedJsonRequest(request.scope, request.receive))

        return bounded


def _public(openapi: dict[str, Any]) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """The operations that take a body and declare no security requirement (the login form), from the
    OpenAPI document: every role check depends on the bearer and API-key schemes, which declare one."""
    public = []
    for path, operations in openapi.get("paths", {}).items():
        methods = frozenset(
            method.upper()
            for method, operation in operations.items()
            if method.upper() in _BODY_METHODS and not operation.get("security")
        )
        if methods:
            public.append((compile_path(path)[0], methods))
    return public


class BodyGuard:
    def __init__(self, app: ASGIApp, fastapi: FastAPI, settings: Settings, batch_paths: Iterable[str]):
        self.app = app
        self.settings = settings
        self.default_limit = settings.edge_max_body_bytes
        self.limits = dict.fromkeys(batch_paths, settings.batch_max_bytes)
        # The routes that take a body from anyone: few (the login form), so the check is a short scan.
        self.public = _public(fastapi.openapi())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if scope["method"] in _BODY_METHODS and not self._may_pass(scope):
            await self.app(scope, _empty(), send)
            return
        limit = self.limits.get(path, self.default_limit)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(path, limit)(scope, receive, send)
            return
        started = False
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except BodyTooLarge as error:  # raised on a path with no problem handler: the fast path's read
            if started:
                raise
            await _too_large(path, error.limit)(scope, receive, send)

    def _may_pass(self, scope: Scope) -> bool:
        """A credential that may pass authentication, or a route that needs none. A bearer token is
        verified here (cached, no I/O); an API key needs a database lookup, so its presence is enough."""
        token: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                return True
            if name == b"authorization" and token is None:
                token = value
        if token is not None and token[:7].lower() == b"bearer ":
            bearer = token[7:].decode("latin-1")
            if bearer.startswith("imk_"):
                return True
            try:
                decode_access_token(self.settings, bearer)
            except Problem:
                pass
            else:
                return True
        method = scope["method"]
        return any(method in methods and pattern.match(scope["path"]) for pattern, methods in self.public)


def _empty() -> Receive:
    """`receive` of a request whose body is not read: an empty body, then the end of the request."""
    messages = [{"type": "http.disconnect"}, _EMPTY]

    async def receive() -> Message:
        return messages.pop() if len(messages) > 1 else messages[0]

    return receive


def install(app: FastAPI) -> None:
    """`BodyTooLarge` raised inside FastAPI gets the same problem as the one `BodyGuard` sends."""

    async def on_too_large(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BodyTooLarge)
        return _too_large(request.url.path, exc.limit)

    app.add_exception_handler(BodyTooLarge, on_too_large)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(path: str, limit: int) -> Response:
    return problem_response(path, 413, TOO_LARGE, f"at most {limit} bytes")
