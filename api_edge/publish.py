"""Publish a command and return only once the broker acknowledged it (acks=all, idempotent producer)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from aiokafka.errors import KafkaError
from prometheus_client import Counter

from api_edge.problems import Problem
from api_edge.state import Clients
from contracts.price_commands import PriceCommand
from contracts.stock_commands import StockCommand
from contracts.topics import Topic

log = structlog.get_logger("invmon.edge")

PUBLISHES = Counter("invmon_edge_publishes_total", "Commands published by the edge, by outcome.", ["outcome"])


def broker_unavailable(detail: str, extra: dict[str, str] | None = None) -> Problem:
    return Problem(
        503,
        "Command broker unavailable",
        detail,
        type_="/problems/broker-unavailable",
        headers={"Retry-After": "2"},
        extra=extra,
    )


async def send_all(clients: Clients, topic: Topic, commands: Sequence[StockCommand | PriceCommand]) -> None:
    """Enqueue every command in order (so per-key order holds), then wait for all broker acks at once.
    Raises KafkaError, OSError or TimeoutError when the broker does not ack within the publish timeout."""
    try:
        async with asyncio.timeout(clients.settings.edge_publish_timeout_s):
            acks = [
                await clients.producer.send(
                    topic.name,
                    command.model_dump_json().encode(),
                    command.sku.encode(),
                    headers=[("content-type", b"application/json"), ("command-type", command.type.encode())],
                )
                for command in commands
            ]
            await asyncio.gather(*acks)
    except (KafkaError, OSError, TimeoutError):
        PUBLISHES.labels("failed").inc(len(commands))
        raise
    PUBLISHES.labels("ok").inc(len(commands))


async def publish_command(clients: Clients, command: StockCommand | PriceCommand, topic: Topic) -> None:
    """Publish one command; its id goes on the request's access line (no log line of its own)."""
    try:
        await send_all(clients, topic, [command])
    except (KafkaError, OSError, TimeoutError) as error:
        log.warning("publish_failed", command_id=str(command.command_id), sku=command.sku, error=repr(error))
        # A record the client library already queued may still reach the broker when it comes back, so
        # this is "not confirmed", not "refused": the answer names the id to check or to retry with.
        raise broker_unavailable(
            "Kafka did not confirm the command in time; it may still be applied once. Check status_url, "
            "or retry with the same command_id (it is never applied twice).",
            {"command_id": str(command.command_id), "status_url": f"/v1/commands/{command.command_id}"},
        ) from error
