"""Entry module of the stock worker: wires settings, clients and the subscriber in one lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from sqlalchemy import text
from starlette.applications import Starlette

from contracts.stock_commands import ExpireReservation
from contracts.topics import STOCK_COMMANDS
from db.engine import make_engine
from infra.kafka import make_broker, require_safe
from infra.logging import configure_logging
from infra.service import service_routes
from infra.settings import Settings, get_settings
from workers.pipeline.consumer import Runtime
from workers.stock_worker import expiry
from workers.stock_worker.handler import register


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    broker = make_broker(settings, client_id="stock-worker", description="inventory-monitor stock worker")
    runtime = Runtime()
    register(broker, settings, runtime)

    async def publish_expiry(command: ExpireReservation) -> None:
        await broker.publish(
            command.model_dump_json().encode(),
            STOCK_COMMANDS.name,
            key=command.sku.encode(),
            headers={"content-type": "application/json"},
        )

    async def database_ready() -> None:
        async with runtime.require_engine().connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def kafka_ready() -> bool:
        return await broker.ping(timeout=2.0)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        runtime.engine = make_engine(settings.database_url)
        try:
            await broker.start()
            require_safe(broker)
            scheduler = asyncio.create_task(
                expiry.run(
                    runtime.engine, publish_expiry, runtime.clock, settings.reservation_expiry_interval_s
                )
            )
            try:
                yield
            finally:
                scheduler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scheduler
        finally:
            await broker.stop()
            await runtime.engine.dispose()

    app = Starlette(
        routes=service_routes({"postgres": database_ready, "kafka": kafka_ready}), lifespan=lifespan
    )
    app.state.broker = broker
    app.state.runtime = runtime
    return app


def main() -> None:
    settings = get_settings()
    configure_logging("stock-worker", settings.log_level, json=settings.log_json)
    uvicorn.run(
        create_app(settings), host=settings.edge_host, port=settings.stock_worker_port, log_config=None
    )


if __name__ == "__main__":
    main()
