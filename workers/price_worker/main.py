"""Entry module of the price worker."""

from __future__ import annotations

from starlette.applications import Starlette

from contracts.topics import PRICE_COMMANDS, PRICE_COMMANDS_DLQ
from infra.settings import Settings, get_settings
from workers.pipeline.process import create_worker_app, serve
from workers.price_worker import schedule
from workers.price_worker.handler import register


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    return create_worker_app(
        settings,
        name="price-worker",
        command_topic=PRICE_COMMANDS,
        dlq_topic=PRICE_COMMANDS_DLQ,
        register=lambda broker, runtime: register(broker, settings, runtime),
        schedules=[schedule.schedule(settings.price_schedule_interval_s)],
    )


def main() -> None:
    settings = get_settings()
    serve(create_app, "price-worker", settings, settings.price_worker_port)


if __name__ == "__main__":
    main()
