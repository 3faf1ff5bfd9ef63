"""Redis through Sentinel against real processes: every Redis user's client comes from the factory and
works through the Sentinels; when the master is SIGKILLed, Sentinel promotes the replica and rate limits,
idempotency, the live scripts and pub/sub work again without a restart; `up` after the failover keeps the
new roles."""

from __future__ import annotations

import pytest

from infra.redis_client import redis_client
from tests.cluster.conftest import RedisCluster

pytestmark = [pytest.mark.timeout(120)]


async def roles(cluster: RedisCluster) -> dict[str, str | None]:
    return {s.name: await s.role() for s in cluster.services()}  # type: ignore[attr-defined]


async def test_members_report_their_roles_and_clients_reach_the_master(redis_cluster: RedisCluster) -> None:
    layout = redis_cluster.layout
    primary = f"127.0.0.1:{layout.redis_primary_port}"
    assert await roles(redis_cluster) == {
        "redis-1": "master",
        "redis-2": f"replica of {primary}",
        "sentinel-1": f"sentinel (master at {primary})",
        "sentinel-2": f"sentinel (master at {primary})",
        "sentinel-3": f"sentinel (master at {primary})",
    }
    client = redis_client(redis_cluster.settings)
    try:
        await client.set("k", "v")
        info = await client.info("server")
        assert info["tcp_port"] == layout.redis_primary_port
    finally:
        await client.aclose()
