"""The clients an edge process holds, built in its lifespan and reached through `request.app.state`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from db.read_engine import ReadEngine
from infra.settings import Settings

if TYPE_CHECKING:  # these modules need this one: import only for the annotations
    from api_edge.live import LiveHub
    from api_edge.ratelimit import RateLimits


@dataclass(slots=True)
class Clients:
    settings: Settings
    broker: KafkaBroker  # connected for the readiness ping; commands go through `producer`
    engine: AsyncEngine  # the primary: writes, and reads that must see them (db.read_engine)
    redis: Redis
    hub: LiveHub
    limits: RateLimits
    producer: AIOKafkaProducer  # publishes every command: per-record futures, no per-call overhead
    reads: ReadEngine  # lag-tolerant reads: the replica when configured and reachable
    # Exports streaming now (api_edge/exports.py); each holds a pooled connection for its whole run.
    exports_running: int = 0


def clients(conn: HTTPConnection) -> Clients:
    found: Clients = conn.app.state.clients
    return found
