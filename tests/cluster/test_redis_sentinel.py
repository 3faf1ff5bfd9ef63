"""Redis through Sentinel against real processes: every Redis user's client comes from the factory and
works through the Sentinels; when the master is SIGKILLed, Sentinel promotes the replica and rate limits,
idempotency, the live scripts and pub/sub work again without a restart; `up` after the failover keeps the
new roles."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.requests import Request

from api_edge import command_ids, idempotency
from api_edge.live import LiveHub
from api_edge.problems import Problem
from api_edge.ratelimit import ERRORS, RateLimits
from api_edge.relay.feed import Categories, Feed
from api_edge.relay.hub import Hub
from infra.live_redis import LiveMessage, LiveRedis
from infra.redis_client import redis_client
from tests.cluster.conftest import RedisCluster
from tests.integration.helpers import wait_until

pytestmark = [pytest.mark.timeout(120)]

log = structlog.get_logger("tests.cluster")

RECOVERY_BOUND_S = 30.0  # Sentinel: down-after 3 s, then the vote and the promotion (about 1-2 s)


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


# --- the failover -----------------------------------------------------------------------------------------


class RecordingHub(Hub):
    """The relay's hub without sockets: what the feed passed on, and which channels it reset."""

    def __init__(self) -> None:
        super().__init__()
        self.passed: list[tuple[str, LiveMessage]] = []
        self.resets: list[str] = []

    def dispatch(self, channel: str, message: LiveMessage, category: str | None, moved: bool) -> None:
        self.passed.append((channel, message))

    def reset(self, channel: str) -> None:
        self.resets.append(channel)


def request(key: str, body: bytes) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "server": ("edge", 80),
        "path": "/v1/items/A/stock/receive",
        "query_string": b"",
        "headers": [(b"idempotency-key", key.encode())],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)


async def recovered_within(started: float, works: Callable[[], Awaitable[bool]], what: str) -> float:
    """Seconds from `started` until `works()` first answers True (each try bounded by the clients' own
    timeouts); fails after RECOVERY_BOUND_S."""
    while time.monotonic() - started < RECOVERY_BOUND_S:
        try:
            if await asyncio.wait_for(works(), 5.0):
                return time.monotonic() - started
        except (Exception, TimeoutError) as error:  # still failing over
            log.debug("not_yet", what=what, error=repr(error))
        await asyncio.sleep(0.05)  # poll interval while waiting for the promotion
    raise AssertionError(f"{what} did not work again within {RECOVERY_BOUND_S}s of the SIGKILL")


@pytest.mark.slow
async def test_sigkill_of_the_master_every_user_works_again_without_a_restart(
    redis_cluster: RedisCluster,
) -> None:
    """SIGKILL the master: Sentinel promotes the replica; the edge's rate limits (Lua, kept connection),
    idempotency, the outbox relay's publish script, the relay's feed and the `?wait=` hub work again on the
    same client objects, each within RECOVERY_BOUND_S (the measured seconds are printed); the live epoch
    changes, so the feed resets its channels instead of passing offsets the new master reuses; `up` then
    brings the old master back as a replica of the new one."""
    settings = redis_cluster.settings.model_copy(
        update={
            "environment": "local",
            "rate_limit_principal": "100000/minute",
            "rate_limit_ip": "100000/minute",
        }
    )
    layout = redis_cluster.layout
    # Each client built as its process builds it (api_edge/app.py, api_edge/relay/main.py, outbox relay).
    edge = redis_client(
        settings,
        blocking=True,
        max_connections=16,
        timeout=5,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError],
    )
    relay = redis_client(
        settings, retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2), socket_connect_timeout=2
    )
    publisher = redis_client(settings)
    limits = RateLimits(settings, edge.connection_pool)
    outbox = LiveRedis(publisher)
    hub = RecordingHub()
    feed = Feed(LiveRedis(relay), hub, Categories(engine=None))  # type: ignore[arg-type]
    wait_hub = LiveHub(edge, idle_s=60.0)
    id_key = command_ids.key(settings)
    principal = f"user:fo-{uuid.uuid4().hex[:8]}"
    conn: Any = SimpleNamespace(client=SimpleNamespace(host="10.9.9.9"), state=SimpleNamespace())
    feed_task = asyncio.create_task(feed.run())

    async def rate_limit_counts() -> bool:
        errors: float = ERRORS._value.get()
        await limits.check(conn, None, principal)
        return bool(ERRORS._value.get() == errors)  # a fail-open check counts an error instead

    refusals: list[Exception] = []

    async def idempotent_request(key: str) -> bool:
        try:
            claim, replay = await idempotency.claim(edge, request(key, b"{}"), principal, 3600, id_key)
        except Exception as error:
            refusals.append(error)
            raise
        if claim is not None:
            await idempotency.complete(edge, claim, idempotency.Stored(202, {"key": key}, None), 3600)
        return replay is None or replay.body == {"key": key}

    async def published(channel: str) -> int:
        return await outbox.publish(channel, [("SKU-1", "stock_changed", "{}")], history=1000)

    async def publishes() -> bool:
        return await published("prices") > 0

    async def feed_passes() -> bool:
        """A publication now reaches the feed within a second (the first of a new epoch resets instead)."""
        sku = f"SKU-{uuid.uuid4().hex[:8]}"
        await outbox.publish("inventory", [(sku, "stock_changed", "{}")], history=1000)

        async def seen() -> bool:
            return any(c == "inventory" and m.sku == sku for c, m in hub.passed)

        await wait_until(seen, bool, within=1.0, what="the feed", interval=0.02)
        return True

    async def wait_resolves() -> bool:
        command_id = str(uuid.uuid4())
        future = await wait_hub.waiter(command_id, within=2.0)
        await outbox.publish("inventory", [("SKU-1", "stock_changed", f'{{"command_id":"{command_id}"}}')],
                             history=1000)  # fmt: skip
        await asyncio.wait_for(future, 2.0)
        return True

    try:
        await asyncio.wait_for(feed.ready.wait(), 10)
        # Before: everything works, and the replica holds it (WAIT) so the answers survive the failover.
        assert await rate_limit_counts()
        assert await idempotent_request("before")
        assert await feed_passes()
        epoch_before, _ = await outbox.position("inventory")
        assert await wait_resolves()
        assert await publisher.wait(1, 5000) == 1

        master = redis_cluster.service("redis-1")
        pid = master.running_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()

        # Every user tries at once, as in a running system, each until it works again.
        probes = {
            "rate limits": rate_limit_counts,
            "idempotency": lambda: idempotent_request("after"),
            "publish script": publishes,
            "relay feed": feed_passes,
            "?wait= hub": wait_resolves,
        }
        seconds = await asyncio.gather(*(recovered_within(killed, p, name) for name, p in probes.items()))
        figures = dict(zip(probes, seconds, strict=True))
        print("seconds from SIGKILL to working again:", {k: round(v, 2) for k, v in figures.items()})
        # While there was no master, a keyed request was refused with 503 (nothing published), never a 500.
        assert refusals
        assert all(isinstance(e, Problem) and e.status == 503 for e in refusals), refusals

        # The new master: the replica, under a new epoch; the feed reset the channel rather than trust it.
        info = await publisher.info("server")
        assert info["tcp_port"] == layout.redis_replica_port
        epoch_after, _ = await outbox.position("inventory")
        assert epoch_after != epoch_before
        assert "inventory" in hub.resets
        # What the replica held: the answer stored before the failover is replayed, not re-run.
        _, replay = await idempotency.claim(edge, request("before", b"{}"), principal, 3600, id_key)
        assert replay is not None
        assert replay.body == {"key": "before"}
        with pytest.raises(Problem) as reused:
            await idempotency.claim(edge, request("before", b"{}x"), principal, 3600, id_key)
        assert reused.value.status == 422

        # `up` again: the old master comes back as a replica of the new one; nothing is forced back.
        await redis_cluster.up()
        replica = f"127.0.0.1:{layout.redis_replica_port}"

        async def settled() -> dict[str, str | None]:
            return await roles(redis_cluster)

        expected = {
            "redis-1": f"replica of {replica}",
            "redis-2": "master",
            **{f"sentinel-{n}": f"sentinel (master at {replica})" for n in (1, 2, 3)},
        }
        await wait_until(settled, lambda r: r == expected, within=30, what="roles after up")
    finally:
        feed_task.cancel()
        await asyncio.gather(feed_task, return_exceptions=True)
        await wait_hub.stop()
        for client in (edge, relay, publisher):
            await client.aclose()
