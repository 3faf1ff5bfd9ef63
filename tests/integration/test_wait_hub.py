"""The edge's `?wait=` hub against the real Redis: subscribed only while a request waits (and `idle_s`
after), an event published once `waiter` returned resolves it, and with Redis down a waiter gives up
after its `within` and the hub stops when nobody waits."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from api_edge.live import LiveHub
from infra.live_redis import pub_channel
from infra.settings import Settings
from tests.integration.helpers import wait_until

pytestmark = [pytest.mark.stack, pytest.mark.timeout(60)]

IDLE_S = 0.2


async def subscriptions(admin: Redis, name: str) -> int:
    """Pattern subscriptions Redis holds for the connections named `name` (CLIENT LIST's psub)."""
    clients = await admin.client_list()
    return sum(int(c["psub"]) for c in clients if c.get("name") == name)


async def test_subscribed_only_while_wanted_and_an_event_after_the_waiter_is_seen(stack: Settings) -> None:
    name = f"hub-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(stack.redis_url, client_name=name)
    admin = Redis.from_url(stack.redis_url, decode_responses=True)
    hub = LiveHub(redis, IDLE_S)
    try:
        assert await subscriptions(admin, name) == 0  # nobody waits: no subscription at all

        command_id = str(uuid.uuid4())
        future = await hub.waiter(command_id, within=5.0)
        assert hub.subscribed.is_set()
        assert await subscriptions(admin, name) == 1
        # Published right after waiter() returned, as the pipeline would after the edge's publish.
        await admin.publish(pub_channel("inventory"), f'{{"command_id": "{command_id}", "sku": "A"}}')
        await asyncio.wait_for(future, 5.0)

        # idle_s after the last waiter, the subscription goes
        await wait_until(lambda: subscriptions(admin, name), lambda n: n == 0, within=10, what="unsubscribe")
        assert not hub.subscribed.is_set()

        # And it comes back for the next waiter.
        again = await hub.waiter(str(uuid.uuid4()), within=5.0)
        assert await subscriptions(admin, name) == 1
        again.cancel()
    finally:
        await hub.stop()
        await redis.aclose()
        await admin.aclose()


async def test_with_redis_down_a_waiter_gives_up_and_the_hub_stops_when_nobody_waits() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)  # nothing listens on port 1
    hub = LiveHub(redis, IDLE_S)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        future = await hub.waiter(str(uuid.uuid4()), within=0.3)
        assert 0.3 <= loop.time() - started < 3.0
        assert not future.done()
        assert not hub.subscribed.is_set()
        future.cancel()  # the request's wait is over

        async def running() -> bool:
            return hub._task is not None

        await wait_until(running, lambda r: not r, within=10, what="the hub to stop")
    finally:
        await hub.stop()
        await redis.aclose()
