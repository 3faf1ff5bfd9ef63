"""The Redis client factory: one server from the URL, or the master through Sentinel with the URL's db
and password (no server needed: nothing here connects)."""

from __future__ import annotations

import pytest
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.sentinel import SentinelConnectionPool

from infra.redis_client import parse_sentinels, redis_client
from infra.settings import Settings


def test_parse_sentinels() -> None:
    assert parse_sentinels("127.0.0.1:26379, h2:26380") == [("127.0.0.1", 26379), ("h2", 26380)]
    with pytest.raises(ValueError, match="not host:port"):
        parse_sentinels("127.0.0.1")


async def test_without_sentinels_the_url_decides() -> None:
    settings = Settings(redis_url="redis://:pw@127.0.0.1:7000/3")
    client = redis_client(settings, blocking=True, max_connections=9)
    pool = client.connection_pool
    assert type(pool) is BlockingConnectionPool
    assert pool.max_connections == 9
    assert (pool.connection_kwargs["port"], pool.connection_kwargs["db"]) == (7000, 3)
    await client.aclose()


async def test_with_sentinels_the_master_is_asked_for_and_the_url_gives_db_and_password() -> None:
    settings = Settings(
        redis_url="redis://:data-pw@ignored:1/2",
        redis_sentinels="127.0.0.1:26379,127.0.0.1:26380",
        redis_sentinel_master="shop",
        redis_sentinel_password="sentinel-pw",  # type: ignore[arg-type]
    )
    for blocking in (False, True):
        client = redis_client(settings, blocking=blocking, socket_connect_timeout=2)
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "shop"
        assert isinstance(pool, BlockingConnectionPool) is blocking
        kwargs = pool.connection_kwargs
        assert (kwargs["db"], kwargs["password"], kwargs["socket_connect_timeout"]) == (2, "data-pw", 2)
        assert "host" not in kwargs
        sentinels = pool.sentinel_manager.sentinels
        assert [s.connection_pool.connection_kwargs["port"] for s in sentinels] == [26379, 26380]
        assert sentinels[0].connection_pool.connection_kwargs["password"] == "sentinel-pw"
        await client.aclose()
