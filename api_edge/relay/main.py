"""Entry module of the WebSocket relay: settings, Redis, PostgreSQL, the feed and the server, wired once.

One port serves the WebSocket endpoint `/v1/live` and the plain HTTP routes `/health/live`,
`/health/ready` and `/metrics` (answered during the handshake, before any upgrade)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable

import structlog
import uvloop
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from sqlalchemy import text
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from api_edge import principals
from api_edge.relay.feed import Categories, Feed
from api_edge.relay.hub import Hub, close_all
from api_edge.relay.session import Relay, Session, close_deactivated
from api_edge.relay.snapshot import Snapshots
from db.engine import make_engine
from db.read_engine import ReadEngine
from infra.live_redis import LiveRedis
from infra.logging import configure_logging
from infra.proxies import TrustedProxies
from infra.redis_client import redis_client
from infra.service import ReadyCheck, freeze_startup_objects, metrics_server, readiness, run_checks
from infra.settings import Settings, get_settings, refuse_unsafe_settings

log = structlog.get_logger("invmon.relay")

PATH = "/v1/live"
# Down, the read replica leaves the relay degraded but ready: snapshots fall back to the primary.
OPTIONAL_CHECKS = frozenset({"postgres_read"})
PING = b'{"type":"ping"}'


def _respond(ws: ServerConnection, status: int, body: bytes | str, content_type: str) -> Response:
    response = ws.respond(status, body if isinstance(body, str) else body.decode())
    response.headers["Content-Type"] = content_type
    return response


def http_routes(relay: Relay, *, metrics: bool) -> object:
    """`metrics`: whether this port serves /metrics (not when they are off or on a port of their own)."""

    async def process_request(ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == PATH:
            return None  # the WebSocket handshake goes on (Origin is checked next)
        if path == "/metrics" and metrics:
            return _respond(ws, 200, generate_latest(), CONTENT_TYPE_LATEST)
        if path == "/health/live":
            return _respond(ws, 200, '{"status":"ok"}', "application/json")
        if path == "/health/ready":
            results = await run_checks(_checks(relay), timeout_s=2.0)
            status, code = readiness(results, optional=OPTIONAL_CHECKS)
            body = json.dumps({"status": status, "checks": results})
            return _respond(ws, code, body, "application/json")
        return _respond(ws, 404, '{"detail":"not found"}', "application/json")

    return process_request


def _checks(relay: Relay) -> dict[str, ReadyCheck]:
    async def postgres() -> None:
        async with relay.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> bool:
        return bool(await relay.live.redis.ping())

    async def feed() -> bool:
        return relay.feed.ready.is_set()

    checks: dict[str, ReadyCheck] = {"postgres": postgres, "redis": redis, "feed": feed}
    if relay.reads.replica is not None:
        checks["postgres_read"] = relay.reads.check_replica
    return checks


async def ping_loop(relay: Relay) -> None:
    interval = relay.settings.live_ping_interval_s
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        for client in list(relay.hub.clients):
            if now - client.last_seen > 2 * interval:
                client.close(4009, "no pong")
            else:
                client.send(PING)


async def run(settings: Settings) -> None:
    # Quick retries: after a Redis restart a pooled connection fails fast and the client's retry (the
    # protocol's `unavailable`) takes over, instead of redis-py's default back-off of seconds.
    redis = redis_client(
        settings,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2),
        socket_connect_timeout=2,
    )
    engine = make_engine(settings.database_url)
    reads = ReadEngine.build(engine, settings.database_read_url)
    live = LiveRedis(redis)
    hub = Hub()
    snapshots = Snapshots(reads, settings.live_snapshot_limit)
    relay = Relay(
        settings,
        hub,
        Feed(live, hub, Categories(engine)),
        live,
        engine,
        snapshots,
        reads,
        TrustedProxies(settings.trusted_proxies),
    )

    async def handler(ws: ServerConnection) -> None:
        await Session(relay, ws).run()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics_host = settings.metrics_host or settings.edge_host
    reloader = principals.status.run(engine, settings.principal_refresh_s, lambda: close_deactivated(hub))
    tasks = [
        asyncio.create_task(relay.feed.run()),
        asyncio.create_task(ping_loop(relay)),
        asyncio.create_task(reloader),
    ]
    try:
        with metrics_server(settings.metrics_enabled, metrics_host, settings.live_metrics_port) as on_main:
            await serve_until_stopped(relay, handler, stop, metrics=on_main)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await redis.aclose()
        await reads.dispose()
        await engine.dispose()


async def serve_until_stopped(
    relay: Relay,
    handler: Callable[[ServerConnection], Awaitable[None]],
    stop: asyncio.Event,
    *,
    metrics: bool,
) -> None:
    settings = relay.settings
    async with serve(
        handler,
        settings.edge_host,
        settings.live_port,
        process_request=http_routes(relay, metrics=metrics),  # type: ignore[arg-type]
        origins=[None, *settings.cors_origins],  # type: ignore[list-item]
        max_size=settings.live_max_frame_bytes,
        compression=None,  # per-message deflate would cost CPU per client on every fan-out
        ping_interval=None,  # the protocol's own ping/pong (ping_loop)
        close_timeout=10,  # a slow consumer reads its backlog before it sees 4008
    ):
        log.info("relay_listening", port=settings.live_port)
        freeze_startup_objects()
        await stop.wait()
        await close_all(relay.hub, 1012, "service restart")


def main() -> None:
    settings = get_settings()
    refuse_unsafe_settings(settings)
    configure_logging("live-relay", settings.log_level, json=settings.log_json)
    # One line per handshake and close at INFO is noise at a thousand clients; the relay logs its own.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    uvloop.run(run(settings))


if __name__ == "__main__":
    main()
