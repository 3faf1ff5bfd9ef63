"""The one place Redis clients are made. Every Redis user (rate limits, idempotency, the live channels,
the edge's `?wait=` hub, the WebSocket relay, the outbox relay's publisher) gets its client here, so the
same settings decide for all of them whether Redis is one server (INVMON_REDIS_URL) or a master found
through Sentinel (INVMON_REDIS_SENTINELS).

Through Sentinel, redis-py's own `SentinelConnectionPool` asks the Sentinels for the master each time it
opens a connection, and drops idle connections to a master that is no longer the one named; a connection
still talking to a demoted master gets READONLY, which redis-py turns into a ConnectionError. So after a
failover each user's existing reconnect path (retry, resubscribe, fail open) lands on the new master
without a restart.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from infra.settings import Settings

# Sentinel queries are small: a Sentinel that does not answer in this long is skipped for the next one.
SENTINEL_TIMEOUT_S = 1.0


class _OwningSentinelPool(SentinelConnectionPool):
    """A master pool that also closes its Sentinel clients when it is closed for good (not when it only
    drops idle connections after a failover)."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:
            await self.sentinel_manager.aclose()


class _OwningSentinelBlockingPool(_OwningSentinelPool, BlockingConnectionPool):
    """The same with BlockingConnectionPool's bounded wait for a free connection (the edge's pool)."""


def parse_sentinels(value: str) -> list[tuple[str, int]]:
    """`host:port,host:port` -> [(host, port), ...]; raises ValueError on an entry without a port."""
    sentinels: list[tuple[str, int]] = []
    for entry in value.split(","):
        host, sep, port = entry.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"INVMON_REDIS_SENTINELS entry {entry!r} is not host:port")
        sentinels.append((host.strip("[]"), int(port)))
    return sentinels


def redis_client(settings: Settings, *, blocking: bool = False, **options: Any) -> Redis:
    """A client on the Redis master. `options` are redis-py connection/pool options (retry,
    socket_connect_timeout, max_connections, ...); `blocking` makes the pool wait for a free connection
    (BlockingConnectionPool: `max_connections`, `timeout`). The client owns its pool: `aclose()` closes
    both (and the Sentinel clients). `client.connection_pool` is the pool, for users that hold
    connections themselves (the rate limiter)."""
    if not settings.redis_sentinels:
        plain: type[ConnectionPool] = BlockingConnectionPool if blocking else ConnectionPool
        return Redis.from_pool(plain.from_url(settings.redis_url, **options))
    # The URL's host and port are replaced by the master the Sentinels name; db, user and password stay.
    url: dict[str, Any] = {
        k: v for k, v in parse_url(settings.redis_url).items() if k not in ("host", "port")
    }
    if url.pop("connection_class", None) is SSLConnection:  # rediss://: the Sentinel pool's TLS flavour
        url["ssl"] = True
    password = settings.redis_sentinel_password
    sentinel = Sentinel(
        parse_sentinels(settings.redis_sentinels),
        sentinel_kwargs={
            "password": password.get_secret_value() if password else None,
            "socket_timeout": SENTINEL_TIMEOUT_S,
            "socket_connect_timeout": SENTINEL_TIMEOUT_S,
        },
    )
    pool_class: type[SentinelConnectionPool] = (
        _OwningSentinelBlockingPool if blocking else _OwningSentinelPool
    )
    client: Redis = sentinel.master_for(
        settings.redis_sentinel_master, connection_pool_class=pool_class, **url, **options
    )
    return client
