"""Entry module of the notifier: event consumer and delivery dispatcher, wired in one lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from db.engine import make_engine
from db.outbox_repo import asyncpg_dsn
from infra.kafka import explained, make_broker, require_safe
from infra.logging import configure_logging
from infra.service import freeze_startup_objects, service_routes
from infra.settings import Settings, get_settings, refuse_unsafe_settings
from workers.notifier import consumer
from workers.notifier.dispatcher import Dispatcher


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    broker = make_broker(settings, client_id="notifier", description="inventory-monitor notifier")
    engines: list[AsyncEngine] = []

    def engine() -> AsyncEngine:
        if not engines:
            raise RuntimeError("notifier used before its lifespan started")
        return engines[0]

    consumer.register(broker, settings, engine)

    async def database_ready() -> None:
        async with engine().connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def kafka_ready() -> bool:
        return await broker.ping(timeout=2.0)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        engines.append(make_engine(settings.database_url, pool_size=settings.notify_concurrency))
        # Redirects are refused (a 3xx is a failed attempt): following one would skip the SSRF guard.
        http = httpx.AsyncClient(
            follow_redirects=False,
            timeout=settings.webhook_timeout_s,
            headers={"user-agent": "inventory-monitor-notifier/1"},
            trust_env=False,
        )
        dispatcher = Dispatcher(engine(), asyncpg_dsn(settings.database_url), settings, http)
        task: asyncio.Task[None] | None = None
        try:
            async with explained(settings):
                await broker.start()
            require_safe(broker)
            task = asyncio.create_task(dispatcher.run(), name="notify-dispatcher")
            freeze_startup_objects()
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await broker.stop()
            await http.aclose()
            await engine().dispose()

    return Starlette(
        routes=service_routes({"postgres": database_ready, "kafka": kafka_ready}), lifespan=lifespan
    )


def main() -> None:
    settings = get_settings()
    refuse_unsafe_settings(settings)
    configure_logging("notifier", settings.log_level, json=settings.log_json)
    uvicorn.run(create_app(settings), host=settings.edge_host, port=settings.notifier_port, log_config=None)


if __name__ == "__main__":
    main()
