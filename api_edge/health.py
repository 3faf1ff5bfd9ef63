"""Liveness, readiness (each dependency with its own timeout and status) and Prometheus metrics."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from sqlalchemy import text

from api_edge.ratelimit import response_headers
from api_edge.state import clients
from infra.service import metrics_response, run_checks

router = APIRouter(tags=["operations"])

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
    """PostgreSQL, Redis and Kafka each answer within their timeout."""
    c = clients(request)

    async def postgres() -> None:
        async with c.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> bool:
        return bool(await c.redis.ping())

    async def kafka() -> bool:
        return await c.broker.ping(timeout=2.0)

    results = await run_checks({"postgres": postgres, "redis": redis, "kafka": kafka}, timeout_s=2.0)
    ok = all(v == "ok" for v in results.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": results}, 200 if ok else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return metrics_response()


def install_request_metrics(app: FastAPI) -> None:
    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        for name, value in response_headers(request).items():
            if name not in response.headers:  # a 429 already carries the verdict of the limit that refused it
                response.headers[name] = value
        route = request.scope.get("route")
        name = getattr(route, "path", "unmatched")
        LATENCY.labels(name).observe(time.perf_counter() - started)
        REQUESTS.labels(name, str(response.status_code)).inc()
        return response
