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
