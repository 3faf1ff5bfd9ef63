"""Redis through Sentinel against real processes: every Redis user's client comes from the factory and
works through the Sentinels; when the master is SIGKILLed (or demoted by SENTINEL FAILOVER), Sentinel
promotes the replica and rate limits, idempotency, the live scripts and pub/sub work again without a
restart; `up` after the failover keeps the new roles. The slow tests print the seconds each user took."""

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
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

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
from tests.integration.test_idempotency_redis_down import keyed_request

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

    def dispatch(
        self, channel: str, message: LiveMessage, category: str | None, moved: bool, places: tuple[str, ...]
    ) -> None:
        self.passed.append((channel, message))

    def reset(self, channel: str) -> None:
        self.resets.append(channel)


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


class Users:
    """Every Redis user of the pipeline, each with its client built as its process builds it (api_edge/app.py,
    api_edge/relay/main.py, workers/outbox_relay/main.py), and a probe per user: True when it works."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.settings = cluster.settings.model_copy(
            update={
                "environment": "local",
                "rate_limit_principal": "100000/minute",
                "rate_limit_ip": "100000/minute",
            }
        )
        self.edge = redis_client(
            self.settings,
            blocking=True,
            max_connections=16,
            timeout=5,
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        self.relay = redis_client(
            self.settings,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2),
            socket_connect_timeout=2,
        )
        self.publisher = redis_client(self.settings)
        self.limits = RateLimits(self.settings, self.edge.connection_pool)
        self.outbox = LiveRedis(self.publisher)
        self.hub = RecordingHub()
        self.feed = Feed(LiveRedis(self.relay), self.hub, Categories(engine=None))  # type: ignore[arg-type]
        self.wait_hub = LiveHub(self.edge, idle_s=60.0)
        self.id_key = command_ids.key(self.settings)
        self.principal = f"user:fo-{uuid.uuid4().hex[:8]}"
        self.refusals: list[Exception] = []  # what keyed requests met while they failed
        self._feed_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Users:
        self._feed_task = asyncio.create_task(self.feed.run())
        await asyncio.wait_for(self.feed.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._feed_task is not None:
            self._feed_task.cancel()
            await asyncio.gather(self._feed_task, return_exceptions=True)
        await self.wait_hub.stop()
        for client in (self.edge, self.relay, self.publisher):
            await client.aclose()

    def probes(self) -> dict[str, Callable[[], Awaitable[bool]]]:
        return {
            "rate limits": self.rate_limit_counts,
            "idempotency": lambda: self.idempotent_request(f"k-{uuid.uuid4().hex[:8]}"),
            "publish script": self.publishes,
            "relay feed": self.feed_passes,
            "?wait= hub": self.wait_resolves,
        }

    async def all_work(self) -> None:
        for name, probe in self.probes().items():
            assert await probe(), name

    async def recovery(self, since: float) -> dict[str, float]:
        """Every user tries at once, as in a running system, each until it works again: seconds taken."""
        probes = self.probes()
        seconds = await asyncio.gather(*(recovered_within(since, p, name) for name, p in probes.items()))
        return dict(zip(probes, seconds, strict=True))

    async def rate_limit_counts(self) -> bool:
        errors: float = ERRORS._value.get()
        conn: Any = SimpleNamespace(client=SimpleNamespace(host="10.9.9.9"), state=SimpleNamespace())
        await self.limits.check(conn, None, self.principal)
        return bool(ERRORS._value.get() == errors)  # a fail-open check counts an error instead

    async def idempotent_request(self, key: str, body: bytes = b"{}") -> bool:
        """A keyed request: its first answer is stored, a replay gets it back."""
        try:
            claim, replay = await idempotency.claim(
                self.edge, keyed_request(key, body), self.principal, 3600, self.id_key
            )
        except Exception as error:
            self.refusals.append(error)
            raise
        if claim is not None:
            answer = idempotency.Stored(202, {"key": key}, None)
            await idempotency.complete(self.edge, claim, answer, 3600)
        return replay is None or replay.body == {"key": key}

    async def publishes(self) -> bool:
        return await self.outbox.publish("prices", [("SKU-1", "price_changed", "{}")], history=1000) > 0

    async def feed_passes(self) -> bool:
        """A publication now reaches the feed within a second (the first of a new epoch resets instead)."""
        sku = f"SKU-{uuid.uuid4().hex[:8]}"
        await self.outbox.publish("inventory", [(sku, "stock_changed", "{}")], history=1000)

        async def seen() -> bool:
            return any(c == "inventory" and m.sku == sku for c, m in self.hub.passed)

        await wait_until(seen, bool, within=1.0, what="the feed", interval=0.02)
        return True

    async def wait_resolves(self) -> bool:
        command_id = str(uuid.uuid4())
        future = await self.wait_hub.waiter(command_id, within=2.0)
        event = f'{{"command_id":"{command_id}"}}'
        await self.outbox.publish("inventory", [("SKU-1", "stock_changed", event)], history=1000)
        await asyncio.wait_for(future, 2.0)
        return True


async def settled_roles(cluster: RedisCluster, master_port: int) -> None:
    """Wait until the node at `master_port` is master, the other its replica, and every Sentinel agrees."""
    master = f"127.0.0.1:{master_port}"
    nodes = {"redis-1": cluster.layout.redis_primary_port, "redis-2": cluster.layout.redis_replica_port}
    expected = {
        **{name: "master" if port == master_port else f"replica of {master}" for name, port in nodes.items()},
        **{f"sentinel-{n}": f"sentinel (master at {master})" for n in (1, 2, 3)},
    }
    await wait_until(lambda: roles(cluster), lambda r: r == expected, within=30, what="roles")


@pytest.mark.slow
async def test_sigkill_of_the_master_every_user_works_again_without_a_restart(
    redis_cluster: RedisCluster,
) -> None:
    """SIGKILL the master: Sentinel promotes the replica; the edge's rate limits (Lua, kept connection),
    idempotency, the outbox relay's publish script, the relay's feed and the `?wait=` hub work again on the
    same client objects, each within RECOVERY_BOUND_S (the measured seconds are printed); the live epoch
    changes, so the feed resets its channels instead of passing offsets the new master reuses; `up` then
    brings the old master back as a replica of the new one."""
    layout = redis_cluster.layout
    async with Users(redis_cluster) as users:
        await users.all_work()
        assert await users.idempotent_request("before")
        epoch_before, _ = await users.outbox.position("inventory")
        # The replica holds all of it (WAIT), so the stored answers survive the failover.
        assert await users.publisher.wait(1, 5000) == 1
        # ...but not the Lua scripts (not replicated): on it, the first calls meet NOSCRIPT and load them.
        replica = Redis(host="127.0.0.1", port=layout.redis_replica_port)
        try:
            scripts = [users.limits._script.sha, users.outbox._publish.sha, users.outbox._position.sha]
            assert await replica.script_exists(*scripts) == [False, False, False]
        finally:
            await replica.aclose()

        pid = redis_cluster.service("redis-1").running_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        figures = await users.recovery(time.monotonic())
        print("seconds from SIGKILL to working again:", {k: round(v, 2) for k, v in figures.items()})

        # While there was no master, a keyed request was refused with 503 (nothing published), never a 500.
        assert users.refusals
        assert all(isinstance(e, Problem) and e.status == 503 for e in users.refusals), users.refusals
        # The new master: the replica, under a new epoch; the feed reset the channel rather than trust it.
        assert (await users.publisher.info("server"))["tcp_port"] == layout.redis_replica_port
        epoch_after, _ = await users.outbox.position("inventory")
        assert epoch_after != epoch_before
        assert "inventory" in users.hub.resets
        # What the replica held: the answer stored before the failover is replayed, not re-run.
        assert await users.idempotent_request("before")
        with pytest.raises(Problem) as reused:
            await users.idempotent_request("before", b"{}x")
        assert reused.value.status == 422

    # `up` again: the old master comes back as a replica of the new one; nothing is forced back.
    await redis_cluster.up()
    await settled_roles(redis_cluster, layout.redis_replica_port)


@pytest.mark.slow
async def test_a_sentinel_failover_moves_every_user_off_the_demoted_master(
    redis_cluster: RedisCluster,
) -> None:
    """SENTINEL FAILOVER: the old master lives on as a replica, so connections to it stay open (the rate
    limiter keeps one, pub/sub subscribers hold theirs); every user still ends up working on the new
    master (a write there answers READONLY, which redis-py turns into a reconnect through Sentinel)."""
    layout = redis_cluster.layout
    async with Users(redis_cluster) as users:
        await users.all_work()
        sentinel = Redis(host="127.0.0.1", port=layout.sentinel_port(0), decode_responses=True)
        try:
            # Right after start, Sentinel may not yet count the replica as promotable (NOGOODSLAVE):
            # it must have seen the replica's link to the master up in a recent INFO.
            await wait_until(
                lambda: sentinel.sentinel_slaves("invmon"),
                lambda replicas: any(r.get("master-link-status") == "ok" for r in replicas),
                within=30,
                what="Sentinel sees a promotable replica",
            )
            assert await sentinel.sentinel_failover("invmon")
        finally:
            await sentinel.aclose()
        # The promotion takes about a second; the users' open connections still lead to the old master.
        await settled_roles(redis_cluster, layout.redis_replica_port)
        errors: float = ERRORS._value.get()
        figures = await users.recovery(time.monotonic())
        print(
            "seconds from the new roles to every user working:", {k: round(v, 2) for k, v in figures.items()}
        )
        assert ERRORS._value.get() == errors  # no rate-limit check failed open on the way
        assert not users.refusals
        assert (await users.publisher.info("server"))["tcp_port"] == layout.redis_replica_port
        assert (await users.edge.info("server"))["tcp_port"] == layout.redis_replica_port
