"""Entry module of the stock worker."""

from __future__ import annotations

from starlette.applications import Starlette

from contracts.topics import STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from infra.settings import Settings, get_settings
from workers.pipeline.process import create_worker_app, serve
from workers.stock_worker import expiry
from workers.stock_worker.handler import register


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    return create_worker_app(
        settings,
        name="stock-worker",
        command_topic=STOCK_COMMANDS,
        dlq_topic=STOCK_COMMANDS_DLQ,
        register=lambda broker, runtime: register(broker, settings, runtime),
        schedules=[expiry.schedule(settings.reservation_expiry_interval_s)],
    )


def main() -> None:
    settings = get_settings()
    serve(create_app, "stock-worker", settings, settings.stock_worker_port)


if __name__ == "__main__":
    main()
