"""Publish a command and return only once the broker acknowledged it (acks=all, idempotent producer)."""

from __future__ import annotations

import asyncio

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


async def publish_command(clients: Clients, command: StockCommand | PriceCommand, topic: Topic) -> None:
    body = command.model_dump_json().encode()
    headers = {"content-type": "application/json", "command-type": command.type}
    try:
        await asyncio.wait_for(
            clients.broker.publish(body, topic.name, key=command.sku.encode(), headers=headers),
            clients.settings.edge_publish_timeout_s,
        )
    except (KafkaError, OSError, TimeoutError) as error:
        PUBLISHES.labels("failed").inc()
        log.warning("publish_failed", command_id=str(command.command_id), sku=command.sku, error=repr(error))
        # A record the client library already queued may still reach the broker when it comes back, so
        # this is "not confirmed", not "refused": the answer names the id to check or to retry with.
        raise broker_unavailable(
            "Kafka did not confirm the command in time; it may still be applied once. Check status_url, "
            "or retry with the same command_id (it is never applied twice).",
            {"command_id": str(command.command_id), "status_url": f"/v1/commands/{command.command_id}"},
        ) from error
    PUBLISHES.labels("ok").inc()
    log.info("command_published", command_id=str(command.command_id), sku=command.sku, type=command.type)
