"""The edge when Redis drops its connections (a restart, CLIENT KILL, a proxy's idle timeout): the next
command on a dropped pooled connection is sent again on a new one, so neither readiness nor a request
fails once per stale connection."""

from __future__ import annotations

import uuid

import httpx
import pytest
from redis.asyncio import Redis

from infra.settings import Settings
from tests.e2e.support import new_sku

pytestmark = [pytest.mark.stack, pytest.mark.timeout(60)]


async def test_dropped_redis_connections_fail_neither_readiness_nor_requests(
    edge: httpx.AsyncClient, stack: Settings
) -> None:
    """Found when a Redis restart in another test came before the schemathesis run: /health/ready said
    Redis was down while it was up (redis-py sent the ping once, on the dropped connection)."""
    admin = Redis.from_url(stack.redis_url)
    try:
        for _ in range(3):
            assert (await edge.get("/health/ready")).status_code == 200
            assert await admin.client_kill_filter(_type="normal", skipme=True) >= 1
            ready = await edge.get("/health/ready")
            assert ready.status_code == 200, ready.text

            await admin.client_kill_filter(_type="normal", skipme=True)
            # Idempotency keys live in Redis too: the claim must not fail with the connection.
            registered = await edge.post(
                "/v1/items",
                json={"sku": new_sku(), "name": "Redis drop"},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert registered.status_code == 202, registered.text
    finally:
        await admin.aclose()
