"""The price command worker: the shared pipeline, with the pricing domain's session."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from contracts.price_commands import PRICE_COMMAND_ADAPTER, PriceCommand
from contracts.topics import PRICE_COMMANDS, PRICE_COMMANDS_DLQ
from infra.settings import Settings
from workers.pipeline import consumer
from workers.pipeline.consumer import CommandWorker, Runtime
from workers.price_worker.session import PriceSession
from workers.rules.pricing import PricePolicy


def price_policy(settings: Settings) -> PricePolicy:
    return PricePolicy(
        approval_threshold_pct=settings.price_approval_threshold_pct,
        margin_floor_pct=settings.margin_floor_pct,
        margin_clear_pts=settings.margin_clear_pts,
    )


def price_command_worker(settings: Settings) -> CommandWorker[PriceCommand]:
    policy = price_policy(settings)
    return CommandWorker(
        name="price",
        topic=PRICE_COMMANDS,
        dlq=PRICE_COMMANDS_DLQ,
        adapter=PRICE_COMMAND_ADAPTER,
        group_id=settings.price_consumer_group,
        session=lambda: PriceSession(policy),
        max_records=settings.worker_max_records,
        batch_timeout_ms=settings.worker_batch_timeout_ms,
        commit_interval_ms=settings.worker_commit_interval_ms,
        linger_ms=settings.worker_linger_ms,
        linger_records=settings.worker_linger_records,
    )


def register(broker: KafkaBroker, settings: Settings, runtime: Runtime) -> None:
    consumer.register(broker, price_command_worker(settings), runtime)
