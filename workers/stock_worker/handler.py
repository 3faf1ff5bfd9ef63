"""The stock command worker: the shared pipeline, with the stock domain's session."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from contracts.stock_commands import STOCK_COMMAND_ADAPTER, StockCommand
from contracts.topics import STOCK_COMMANDS, STOCK_COMMANDS_DLQ
from infra.settings import Settings
from workers.pipeline import consumer
from workers.pipeline.consumer import CommandWorker, Runtime
from workers.rules.alerts import AlertPolicy
from workers.stock_worker.apply import StockSession


def stock_command_worker(settings: Settings) -> CommandWorker[StockCommand]:
    policy = AlertPolicy(settings.alert_clear_margin_pct)
    return CommandWorker(
        name="stock",
        topic=STOCK_COMMANDS,
        dlq=STOCK_COMMANDS_DLQ,
        adapter=STOCK_COMMAND_ADAPTER,
        group_id=settings.stock_consumer_group,
        session=lambda: StockSession(policy),
        max_records=settings.worker_max_records,
        batch_timeout_ms=settings.worker_batch_timeout_ms,
        commit_interval_ms=settings.worker_commit_interval_ms,
        linger_ms=settings.worker_linger_ms,
        linger_records=settings.worker_linger_records,
    )


def register(broker: KafkaBroker, settings: Settings, runtime: Runtime) -> None:
    consumer.register(broker, stock_command_worker(settings), runtime)
