"""Rate limits against the real Redis: concurrent checks go out as one pipeline and still count exactly,
a refused check counts nothing, and the checks survive Redis forgetting the script (SCRIPT FLUSH, a
restart) or dropping their connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from api_edge.problems import Problem
from api_edge.ratelimit import ERRORS, RateLimits
from infra.settings import Settings

pytestmark = [pytest.mark.stack, pytest.mark.timeout(60)]


def connection(host: str) -> Any:
    return SimpleNamespace(client=SimpleNamespace(host=host), state=SimpleNamespace())


async def outcomes(limits: RateLimits, principal: str, count: int) -> list[int]:
    """Run `count` checks at once; each one's status: 200 let through, 429 refused."""

    async def one() -> int:
        try:
            await limits.check(connection("10.1.2.3"), None, principal)
        except Problem as problem:
            return problem.status
        return 200

    return list(await asyncio.gather(*(one() for _ in range(count))))


def limited(stack: Settings, principal_limit: str) -> Settings:
    update = {"rate_limit_principal": principal_limit, "rate_limit_ip": "100000/minute"}
    return stack.model_copy(update=update)


@pytest.fixture
async def pool(stack: Settings) -> Any:
    pool = BlockingConnectionPool.from_url(stack.redis_url, max_connections=8, timeout=5)
    yield pool
    await pool.aclose()


async def test_concurrent_checks_count_exactly(stack: Settings, pool: BlockingConnectionPool) -> None:
    limits = RateLimits(limited(stack, "50/minute"), pool)
    principal = f"user:rl-{uuid.uuid4().hex[:8]}"
    statuses = await outcomes(limits, principal, 200)
    assert statuses.count(200) == 50
    assert statuses.count(429) == 150
    # The refused ones were not counted: the window holds exactly the 50 let through.
    key = f"LIMITS:{{LIMITER/principal/{principal}/50/1/minute}}"
    assert int(await Redis(connection_pool=pool).get(key) or 0) == 50


async def flush_scripts(admin: Redis) -> None:
    await admin.script_flush()


async def drop_connections(admin: Redis) -> None:
    """Every client connection but `admin`'s, the checks' kept one among them."""
    assert await admin.client_kill_filter(_type="normal", skipme=True) >= 1


@pytest.mark.parametrize("forget", [flush_scripts, drop_connections])
async def test_checks_survive_redis_forgetting_them(
    stack: Settings, pool: BlockingConnectionPool, forget: Callable[[Redis], Awaitable[None]]
) -> None:
    """Redis loses the script (SCRIPT FLUSH) or the connection the checks keep: the checks after it load
    the script again or go out on a new connection, count every hit, and never fail open."""
    limits = RateLimits(limited(stack, "1000/minute"), pool)
    principal = f"user:rl-{uuid.uuid4().hex[:8]}"
    errors = ERRORS._value.get()
    assert await outcomes(limits, principal, 5) == [200] * 5
    await forget(Redis(connection_pool=pool))
    assert await outcomes(limits, principal, 20) == [200] * 20
    conn = connection("10.1.2.3")
    await limits.check(conn, None, principal)
    assert conn.state.ratelimit.remaining == 1000 - 26
    assert ERRORS._value.get() == errors


async def status_of(check: Awaitable[None]) -> int:
    try:
        await check
    except Problem as problem:
        return problem.status
    return 200


def counting_calls(limits: RateLimits) -> list[bytes]:
    """The script calls `limits` sends to Redis from now on (each a round trip, alone or pipelined)."""
    sent: list[bytes] = []
    script = limits._script
    call = script.call

    async def counted(command: bytes) -> list[list[int]]:
        sent.append(command)
        return await call(command)

    script.call = counted  # type: ignore[method-assign]
    return sent


async def test_a_steady_caller_takes_its_hits_in_leases_and_every_hit_counts(
    stack: Settings, pool: BlockingConnectionPool
) -> None:
    limit = 100_000
    limits = RateLimits(limited(stack, f"{limit}/minute"), pool)
    principal = f"user:rl-{uuid.uuid4().hex[:8]}"
    sent = counting_calls(limits)
    conn = connection("10.1.2.3")
    for _ in range(500):
        await limits.check(conn, None, principal)
    assert len(sent) < 100, f"{len(sent)} script calls for 500 checks"
    (lease,) = [lease for key, lease in limits._leases.items() if key[-1].key == principal]
    key = f"LIMITS:{{LIMITER/principal/{principal}/{limit}/1/minute}}"
    counted = int(await Redis(connection_pool=pool).get(key) or 0)
    assert counted - lease.tokens == 500  # counted ahead, never lost: hits used plus the lease's rest
    assert conn.state.ratelimit.remaining == limit - 500
    # The lease runs out unused: its rest goes back with the key's next call.
    lease.until = 0.0
    await limits.check(conn, None, principal)
    counted = int(await Redis(connection_pool=pool).get(key) or 0)
    assert counted - lease.tokens == 501
    assert conn.state.ratelimit.remaining == limit - 501


async def test_leases_of_two_processes_let_exactly_the_limit_through(
    stack: Settings, pool: BlockingConnectionPool
) -> None:
    """Both edges lease while the key has room; near the limit every hit is counted on its own, and the
    hits one edge still holds are used by that edge: together exactly the limit passes."""
    limit = 1000  # leases of up to 10 hits
    first, second = (RateLimits(limited(stack, f"{limit}/minute"), pool) for _ in range(2))
    principal = f"user:rl-{uuid.uuid4().hex[:8]}"
    sent = counting_calls(first)
    statuses = []
    for i in range(1300):
        statuses.append(
            await status_of((first if i % 2 else second).check(connection("10.1.2.3"), None, principal))
        )
    assert statuses.count(200) == limit
    assert statuses.count(429) == 1300 - limit
    assert len(sent) < 650 * 0.5  # leases were taken
    key = f"LIMITS:{{LIMITER/principal/{principal}/{limit}/1/minute}}"
    assert int(await Redis(connection_pool=pool).get(key) or 0) == limit


async def test_without_leases_every_check_is_its_own_call(
    stack: Settings, pool: BlockingConnectionPool
) -> None:
    update = {"rate_limit_lease_ms": 0}
    limits = RateLimits(limited(stack, "100000/minute").model_copy(update=update), pool)
    sent = counting_calls(limits)
    principal = f"user:rl-{uuid.uuid4().hex[:8]}"
    for _ in range(50):
        await limits.check(connection("10.1.2.3"), None, principal)
    assert len(sent) == 50
