"""The edge's one wiring point: settings, clients and routers, built in a lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.types import ASGIApp

from api_edge import (
    admin,
    asyncapi,
    audit,
    auth,
    batch,
    bodies,
    commands,
    dashboard,
    docs,
    exports,
    health,
    notifications,
    operations,
    overview,
    price_commands,
    price_reads,
    principals,
    problems,
    reads,
)
from api_edge.fast_intake import FastIntake
from api_edge.health import RequestMetrics
from api_edge.live import LiveHub
from api_edge.ratelimit import RateLimits
from api_edge.state import Clients
from db.engine import make_engine
from db.read_engine import ReadEngine
from infra.kafka import make_broker, raw_producer
from infra.redis_client import redis_client
from infra.service import freeze_startup_objects, metrics_server
from infra.settings import Settings, get_settings

# The command routes the plain-ASGI path answers: all but the price decisions, which the audit trail records
# (api_edge.audit) and the fast path knows nothing of.
FAST_ROUTES = [
    route
    for route in [*commands.stock.routes, *price_commands.prices.routes]
    if route.kind not in price_commands.AUDITED
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        broker = make_broker(settings, client_id="edge-ping", description="inventory-monitor HTTP edge")
        engine = make_engine(settings.database_url)
        reads = ReadEngine.build(engine, settings.database_read_url)
        # Bounded and blocking: under a burst, requests wait briefly for a connection rather than erroring.
        # A pooled connection Redis dropped (a restart, CLIENT KILL, an idle timeout) fails its next command
        # once; that command is sent again on a new connection instead of failing the request.
        redis = redis_client(
            settings,
            blocking=True,
            max_connections=256,
            timeout=5,
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        hub = LiveHub(redis, settings.edge_wait_idle_s)
        producer = raw_producer(settings, client_id="edge")
        app.state.clients = Clients(
            settings, broker, engine, redis, hub, RateLimits(settings, redis.connection_pool), producer, reads
        )
        await broker.connect()
        await producer.start()
        # Deactivated users are known before the first request (unless PostgreSQL is away: then soon after).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(principals.status.load(engine), settings.principal_refresh_s)
        reloader = asyncio.create_task(principals.status.run(engine, settings.principal_refresh_s))
        app.openapi()  # built now, so it is frozen with the rest instead of on the first /docs request
        freeze_startup_objects()
        metrics_host = settings.metrics_host or settings.edge_host
        try:
            with metrics_server(settings.metrics_enabled, metrics_host, settings.edge_metrics_port):
                yield
        finally:
            reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reloader
            await hub.stop()
            await producer.stop()
            await broker.stop()
            await redis.aclose()  # and its pool
            await reads.dispose()
            await engine.dispose()

    app = FastAPI(
        title="inventory-monitor edge",
        version="1",
        summary="Publish stock commands, read applied state, watch live events.",
        lifespan=lifespan,
        docs_url=None,  # api_edge.docs serves Swagger UI from a package instead of a CDN
        redoc_url=None,
        # Metrics are Prometheus (api_edge.health); FastAPI's built-in OpenTelemetry hooks would otherwise
        # look up the global providers (environment reads) on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    for module in (
        auth,
        batch,
        commands,
        price_commands,
        reads,
        price_reads,
        notifications,
        admin,
        operations,
        overview,
        audit,
        exports,
        health,
        asyncapi,
    ):
        app.include_router(module.router, responses=problems.COMMON_RESPONSES)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-API-Key"],
            expose_headers=[
                "Location",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
        )
    problems.install(app)
    docs.install(app)
    bodies.install(app)
    dashboard.install(app, settings)
    return app


def create_edge(settings: Settings | None = None) -> ASGIApp:
    """What uvicorn serves: the access line and metrics around the command fast path, around FastAPI.

    Outside FastAPI rather than as its middleware: a fast-path request then skips FastAPI's and Starlette's
    own layers (error, telemetry and body-limit middleware, the app's entry), 12 % of its CPU on the
    2-core box (bench.edge_http, c=64: 170 -> 150 us per request)."""
    settings = settings or get_settings()
    app = create_app(settings)
    intake = FastIntake(app, routes=FAST_ROUTES)
    # Inside the access line (a refused body is logged and counted too), outside everything that reads.
    return RequestMetrics(bodies.BodyGuard(intake, app, settings, batch_paths=batch.PATHS))
