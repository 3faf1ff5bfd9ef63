"""The one wiring point of a command-worker process: settings, engine, broker, subscriber and schedules
are built and closed in a lifespan; /health and /metrics are served beside them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import structlog
import uvicorn
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from sqlalchemy import text
from starlette.applications import Starlette

from contracts.topics import Topic
from db.engine import make_engine
from infra.kafka import (
    dlq_cannot_carry,
    explained,
    make_broker,
    raw_producer,
    read_topic_configs,
    require_safe,
)
from infra.logging import configure_logging
from infra.service import freeze_startup_objects, service_routes
from infra.settings import Settings, refuse_unsafe_settings
from workers.pipeline import maintenance, scheduler
from workers.pipeline.consumer import Runtime
from workers.pipeline.scheduler import Schedule

log = structlog.get_logger("invmon.worker")

# A batch transaction takes milliseconds; a lock held this long is held by someone else.
BATCH_LOCK_TIMEOUT_MS = 1000


def create_worker_app(
    settings: Settings,
    *,
    name: str,
    command_topic: Topic,
    dlq_topic: Topic,
    register: Callable[[KafkaBroker, Runtime], None],
    schedules: Sequence[Schedule] = (),
) -> Starlette:
    broker = make_broker(settings, client_id=name, description=f"inventory-monitor {name}")
    runtime = Runtime()
    register(broker, runtime)

    async def publish(command: Any) -> None:
        await broker.publish(
            command.model_dump_json().encode(),
            command_topic.name,
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
        # Every batch pays the pre-ping round trip otherwise; command_log.transaction drops dead connections.
        # A row locked elsewhere (an operator's open transaction) fails the batch after the lock timeout
        # instead of holding the worker: its partition then waits paused while the others go on.
        engine = runtime.engine = make_engine(
            settings.database_url, pre_ping=False, lock_timeout_ms=BATCH_LOCK_TIMEOUT_MS, generic_plans=True
        )
        dead_letters = raw_producer(settings, client_id=f"{name}-dlq", dead_letters=True)
        runtime.dead_letters = dead_letters
        tasks: list[asyncio.Task[None]] = []
        try:
            # A DLQ that cannot take what the command topic accepts would stop the pipeline at the first
            # large bad record: refuse to start instead, with the one line that says what to fix.
            topics = [command_topic.name, dlq_topic.name]
            async with explained(settings):
                configs = await read_topic_configs(settings, topics)
            problem = dlq_cannot_carry(configs, *topics)
            problem = problem or maintenance.processed_retention_problem(
                settings, command_topic.name, configs
            )
            if problem:
                log.error("dlq_cannot_carry_commands", problem=problem)
                raise RuntimeError(problem)
            await dead_letters.start()
            await broker.start()
            require_safe(broker)
            tasks = [asyncio.create_task(scheduler.run(engine, s, publish, runtime.clock)) for s in schedules]
            tasks.append(asyncio.create_task(maintenance.run(engine, settings)))
            freeze_startup_objects()
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for committer in runtime.committers:
                await committer.flush()
            await broker.stop()
            await dead_letters.stop()
            await engine.dispose()

    app = Starlette(
        routes=service_routes({"postgres": database_ready, "kafka": kafka_ready}), lifespan=lifespan
    )
    app.state.broker = broker
    app.state.runtime = runtime
    app.state.command_topic = command_topic.name
    return app


def refuse_short_retention(settings: Settings, topic: str) -> None:
    """Processed ids kept for less time than the command topic keeps records: a redelivery could be
    applied twice. One line on stderr, exit status 2, like the other startup checks. A broker that does
    not answer yet leaves the check to the lifespan, which repeats it."""
    try:
        configs = asyncio.run(read_topic_configs(settings, [topic]))
    except (KafkaError, OSError, TimeoutError) as error:
        log.warning("retention_check_deferred", error=repr(error))
        return
    problem = maintenance.processed_retention_problem(settings, topic, configs)
    if problem is not None:
        print(f"refusing to start: {problem}", file=sys.stderr)
        raise SystemExit(2)


def serve(app_factory: Callable[[Settings], Starlette], name: str, settings: Settings, port: int) -> None:
    refuse_unsafe_settings(settings)
    configure_logging(name, settings.log_level, json=settings.log_json)
    app = app_factory(settings)
    refuse_short_retention(settings, app.state.command_topic)
    # A batch allocates many short-lived objects; with the default thresholds the collector ran through
    # 9-15% of a worker's time (bench/README.md). Freeze what import created, collect young less often.
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    uvicorn.run(app, host=settings.edge_host, port=port, log_config=None)
