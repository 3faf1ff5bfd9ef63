"""Liveness, readiness (each dependency with its own timeout and status) and Prometheus metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_edge.ratelimit import ratelimit_headers
from api_edge.state import clients
from infra.logging import hot_path_line, redact_url
from infra.service import ReadyCheck, metrics_response, readiness, run_checks

router = APIRouter(tags=["operations"])
OPTIONAL_CHECKS = frozenset({"postgres_read"})

REQUESTS = Counter("invmon_edge_requests_total", "HTTP requests by route and status.", ["route", "status"])
LATENCY = Histogram(
    "invmon_edge_request_seconds",
    "HTTP request latency by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/health/ready", responses={503: {"description": "A dependency is not usable."}})
async def ready(request: Request) -> JSONResponse:
    """PostgreSQL, Redis and Kafka each answer within their timeout. With a read replica configured, it is
    checked too: down, the edge is `degraded` but ready (its reads fall back to the primary)."""
    c = clients(request)

    async def postgres() -> None:
        async with c.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> bool:
        return bool(await c.redis.ping())

    async def kafka() -> bool:
        return await c.broker.ping(timeout=2.0)

    checks: dict[str, ReadyCheck] = {"postgres": postgres, "redis": redis, "kafka": kafka}
    if c.reads.replica is not None:
        checks["postgres_read"] = c.reads.check_replica
    results = await run_checks(checks, timeout_s=2.0)
    status, code = readiness(results, optional=OPTIONAL_CHECKS)
    return JSONResponse({"status": status, "checks": results}, code)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    settings = clients(request).settings
    if not settings.metrics_enabled or settings.edge_metrics_port is not None:  # off, or on its own port
        raise StarletteHTTPException(404)
    return metrics_response()


_RATELIMIT_LIMIT = b"ratelimit-limit"


def _raw(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


_children: dict[tuple[object, ...], Any] = {}


def _child(metric: Counter | Histogram, *labels: str) -> Any:
    """`metric.labels(*labels)`, remembered: routes are templates and statuses few, so this stays small,
    and `labels()` takes a lock and builds its key on every call."""
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


class RequestMetrics:
    """Pure ASGI middleware around every HTTP request: the latency histogram and request counter, the
    rate-limit headers of the verdict the request earned, and ONE access line (method, path and query
    with tokens redacted, status, milliseconds, and the command id when one was published). uvicorn's own
    access log is off.

    Pure ASGI rather than `@app.middleware("http")`: that wraps every request in a task group, a memory
    stream and a streaming response, which cost more CPU than the rest of the request's framework work."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before it answers (ServerErrorMiddleware)

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                verdict = scope.get("state", {}).get("ratelimit")
                headers = message.get("headers", ())
                # A 429 already carries the verdict of the limit that refused it. Raw header pairs, not
                # MutableHeaders: three lookups over it cost more than the rest of this middleware.
                if verdict is not None and not any(name == _RATELIMIT_LIMIT for name, _ in headers):
                    message["headers"] = [*headers, *_raw(ratelimit_headers(verdict))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            _child(LATENCY, route).observe(elapsed)
            _child(REQUESTS, route, str(status)).inc()
            state = scope.get("state", {})
            query = scope.get("query_string", b"")
            hot_path_line(
                "invmon.edge.access",
                "http_request",
                method=scope["method"],
                path=redact_url(f"{scope['path']}?{query.decode('latin-1')}") if query else scope["path"],
                status=status,
                ms=round(elapsed * 1000, 2),
                client=scope["client"][0] if scope.get("client") else None,
                command_id=state.get("command_id"),
            )
