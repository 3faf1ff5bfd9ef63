"""Entry module of the outbox relay: wires settings, Kafka, Redis and the relay loop in one lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import structlog
import uvicorn
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from faststream.kafka import KafkaBroker
from starlette.applications import Starlette

from contracts.topics import EVENTS
from db.outbox_repo import asyncpg_dsn
from infra.kafka import aiokafka_producer, client_security, make_broker
from infra.live_redis import LiveRedis
from infra.logging import configure_logging
from infra.redis_client import redis_client
from infra.service import freeze_startup_objects, service_routes
from infra.settings import Settings, get_settings, refuse_unsafe_settings
from workers.outbox_relay.ops_metrics import OpsMetrics
from workers.outbox_relay.relay import OutboxRelay

log = structlog.get_logger("invmon.outbox_relay")

# aiokafka's default; make_broker leaves it. The event topic takes the smaller of this and its own limit.
MAX_REQUEST_BYTES = 1_048_576


class EventProducer:
    """The relay's FastStream broker, replaceable: see relay.PRODUCER_STUCK."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.broker = self._make()

    def _make(self) -> KafkaBroker:
        # No linger: a round enqueues its events together and waits for their acks before it marks the rows
        # and reads more, so lingering only added to every round (records enqueued while a request is in
        # flight are batched anyway).
        return make_broker(
            self._settings,
            client_id="outbox-relay",
            description="inventory-monitor outbox relay",
            linger_ms=0,
        )

    async def send(self, body: bytes, topic: str, key: bytes, headers: dict[str, str]) -> asyncio.Future[Any]:
        # Straight to the broker's aiokafka producer: FastStream's publish (a command object, the codec,
        # middlewares) cost as much CPU per record as aiokafka's own send (py-spy, bench.live_e2e). The
        # record is the same: FastStream's `correlation_id` header is kept, as the event id (stable on a
        # republish, where FastStream's was a new UUID each time).
        named = {"content-type": "", "correlation_id": headers["event-id"], **headers}
        producer = aiokafka_producer(self.broker)
        if producer is None:
            raise RuntimeError("the outbox relay's Kafka broker is not connected")
        future: asyncio.Future[Any] = await producer.send(
            topic, body, key=key, headers=[(name, value.encode()) for name, value in named.items()]
        )
        return future

    async def max_record_bytes(self) -> int:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._settings.kafka_bootstrap, **client_security(self._settings)
        )
        await admin.start()
        try:
            wanted = ConfigResource(ConfigResourceType.TOPIC, EVENTS.name, {"max.message.bytes": None})
            [response] = await admin.describe_configs([wanted])
        finally:
            await admin.close()
        [resource] = response.to_object()["resources"]
        entries = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
        if resource["error_code"] != 0 or "max.message.bytes" not in entries:
            # E.g. a Kafka user allowed to produce but not to describe configs: the producer's own limit
            # still holds, and a lower topic limit is then caught by the broker (relay.BrokerRefused).
            log.warning("event_topic_limit_unknown", error=resource["error_code"], using=MAX_REQUEST_BYTES)
            return MAX_REQUEST_BYTES
        return min(int(entries["max.message.bytes"]), MAX_REQUEST_BYTES)

    async def reset(self) -> None:
        old, self.broker = self.broker, self._make()
        with contextlib.suppress(Exception):  # its connections may be gone already
            await old.stop()
        await self.broker.start()


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or get_settings()
    producer = EventProducer(settings)
    redis = redis_client(settings)
    dsn = asyncpg_dsn(settings.database_url)

    async def database_ready() -> None:
        conn = await asyncpg.connect(dsn)
        await conn.close()

    async def redis_ready() -> bool:
        return bool(await redis.ping())

    async def kafka_ready() -> bool:
        return await producer.broker.ping(timeout=2.0)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await producer.broker.start()
        relay = OutboxRelay(
            dsn,
            producer,
            LiveRedis(redis),
            batch_size=settings.outbox_batch_size,
            poll_interval_s=settings.outbox_poll_interval_s,
            history=settings.live_history_size,
        )
        task = asyncio.create_task(relay.run(), name="outbox-relay")
        ops = asyncio.create_task(OpsMetrics(settings, dsn).run(), name="ops-metrics")
        freeze_startup_objects()
        try:
            yield
        finally:
            for running in (ops, task):
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
            await producer.broker.stop()
            await redis.aclose()

    checks = {"postgres": database_ready, "redis": redis_ready, "kafka": kafka_ready}
    return Starlette(routes=service_routes(checks), lifespan=lifespan)


def main() -> None:
    settings = get_settings()
    refuse_unsafe_settings(settings)
    configure_logging("outbox-relay", settings.log_level, json=settings.log_json)
    uvicorn.run(
        create_app(settings), host=settings.edge_host, port=settings.outbox_relay_port, log_config=None
    )


if __name__ == "__main__":
    main()
