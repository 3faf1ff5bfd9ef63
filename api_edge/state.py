"""The clients an edge process holds, built in its lifespan and reached through `request.app.state`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from infra.settings import Settings

if TYPE_CHECKING:  # the hub's module needs this one: import only for the annotation
    from api_edge.live import LiveHub


@dataclass(slots=True)
class Clients:
    settings: Settings
    broker: KafkaBroker
    engine: AsyncEngine
    redis: Redis
    hub: LiveHub


def clients(conn: HTTPConnection) -> Clients:
    found: Clients = conn.app.state.clients
    return found
