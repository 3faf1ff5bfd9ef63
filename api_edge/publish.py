"""Publish a command and return only once the broker acknowledged it (acks=all, idempotent producer)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.producer.message_accumulator import BatchBuilder
from prometheus_client import Counter

from api_edge.problems import Problem
from api_edge.state import Clients
from contracts.price_commands import PriceCommand
from contracts.stock_commands import StockCommand
from contracts.topics import Topic
from infra.kafka import PARTITIONER

log = structlog.get_logger("invmon.edge")

PUBLISHES = Counter("invmon_edge_publishes_total", "Commands published by the edge, by outcome.", ["outcome"])
_OK, _FAILED = PUBLISHES.labels("ok"), PUBLISHES.labels("failed")


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
    Raises KafkaError, OSError or TimeoutError when the broker does not ack within the publish timeout.

    One command goes through `send`. Many are appended to one record batch per partition and each batch
    is submitted with `send_batch`: no per-record coroutine and future. The partition is the one `send`
    would choose (the producer's partitioner over the same partition list), so a SKU's commands share a
    partition whichever way they come."""
    producer = clients.producer
    try:
        async with asyncio.timeout(clients.settings.edge_publish_timeout_s):
            if len(commands) == 1:
                command = commands[0]
                key = command.sku.encode()
                partitions = tuple(await producer.partitions_for(topic.name))
                ack = await producer.send(
                    topic.name,
                    _json(command),
                    key,
                    partition=_partition_of(key, partitions),
                    headers=_HEADERS[command.type],
                )
                await ack
            else:
                await asyncio.gather(*await _send_batches(producer, topic.name, commands))
    except (KafkaError, OSError, TimeoutError):
        _FAILED.inc(len(commands))
        raise
    _OK.inc(len(commands))


def _json(command: StockCommand | PriceCommand) -> bytes:
    """`model_dump_json().encode()` without the str round trip and the keyword handling (~1 us each)."""
    return command.__pydantic_serializer__.to_json(command)


class _Headers(dict[str, list[tuple[str, bytes]]]):
    """The record headers of each command type, built once (the producer only reads them)."""

    def __missing__(self, kind: str) -> list[tuple[str, bytes]]:
        headers = self[kind] = [("content-type", b"application/json"), ("command-type", kind.encode())]
        return headers


_HEADERS = _Headers()


@functools.lru_cache(maxsize=100_000)
def _partition_of(key: bytes, partitions: tuple[int, ...]) -> int:
    """The producer's partitioner (murmur2 in Python, ~5 us), remembered per SKU and partition list."""
    partition: int = PARTITIONER(key, list(partitions), list(partitions))
    return partition


async def _send_batches(
    producer: AIOKafkaProducer, topic: str, commands: Sequence[StockCommand | PriceCommand]
) -> list[asyncio.Future[object]]:
    partitions = tuple(await producer.partitions_for(topic))  # in the order `send` gives the partitioner
    batches: dict[int, BatchBuilder] = {}
    acks: list[asyncio.Future[object]] = []
    for command in commands:
        key = command.sku.encode()
        partition = _partition_of(key, partitions)
        value, headers = _json(command), _HEADERS[command.type]
        batch = batches.get(partition)
        if batch is None or batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            if batch is not None:  # full: submit it, start the next one
                acks.append(await producer.send_batch(batch, topic, partition=partition))
            batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                # Not expected (an empty batch takes any first record); a KafkaError answers 503, not 500.
                raise MessageSizeTooLargeError(f"command {command.command_id}")
    for partition, batch in batches.items():
        acks.append(await producer.send_batch(batch, topic, partition=partition))
    return acks


async def publish_command(clients: Clients, command: StockCommand | PriceCommand, topic: Topic) -> None:
    """Publish one command; its id goes on the request's access line (no log line of its own). Bound for
    the request's task, the id and sku also reach every other line it logs (`invmon logs --command-id`)."""
    structlog.contextvars.bind_contextvars(command_id=str(command.command_id), sku=command.sku)
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
