"""The edge's hot-path shortcuts keep their promises: the verified-token cache honours expiry and never
stands in for verification, the rate-limit headers are the `limits` library's figures, and rate limiting
fails open (counted) when Redis is unreachable."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace
from typing import Any

import pytest
from limits import parse
from pydantic import SecretStr
from redis.asyncio import BlockingConnectionPool

from api_edge import auth
from api_edge.auth import Principal, decode_token
from api_edge.problems import Problem
from api_edge.ratelimit import ERRORS, RateLimits, _verdict
from infra.settings import Settings, get_settings


def request_for(settings: Settings) -> Any:
    return SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(clients=SimpleNamespace(settings=settings)))
    )


def cache_key(settings: Settings, token: str) -> tuple[str, str, str, str]:
    return (token, settings.jwt_secret.get_secret_value(), settings.jwt_audience, settings.jwt_issuer)


def test_an_expired_cache_entry_is_not_trusted() -> None:
    settings = get_settings()
    token = "not.a-valid.token"
    auth._verified[cache_key(settings, token)] = (Principal("user:x", frozenset({"admin"})), time.time() - 1)
    try:
        with pytest.raises(Problem) as refused:
            decode_token(request_for(settings), token)
        assert refused.value.status == 401
    finally:
        auth._verified.pop(cache_key(settings, token), None)


def test_a_token_is_cached_only_for_the_key_that_verified_it() -> None:
    settings = get_settings()
    token = auth.issue_token(request_for(settings), "user:cached", ["viewer"]).access_token
    assert decode_token(request_for(settings), token) == Principal("user:cached", frozenset({"viewer"}))
    assert cache_key(settings, token) in auth._verified
    other = settings.model_copy(update={"jwt_secret": SecretStr("another-secret-of-at-least-32-bytes-!!")})
    with pytest.raises(Problem) as refused:
        decode_token(request_for(other), token)
    assert refused.value.status == 401


@pytest.mark.parametrize(
    ("previous", "previous_ttl_ms", "current", "current_ttl_ms"),
    [(0, 0, 1, 120_000), (30, 30_000, 10, 100_000), (100, 59_000, 0, 0), (0, 0, 0, 0)],
)
def test_headers_are_the_libraries_window_stats(
    previous: int, previous_ttl_ms: int, current: int, current_ttl_ms: int
) -> None:
    """What SlidingWindowCounterRateLimiter.get_window_stats computes from the same window."""
    item = parse("100/minute")
    expiry = item.get_expiry()
    weighted = previous * (previous_ttl_ms / 1000) / expiry + current
    remaining = max(0, item.amount - math.floor(weighted))
    resets = [previous_ttl_ms / 1000 % (expiry / previous)] if previous else []
    resets += [current_ttl_ms / 1000 % expiry] if current else []
    verdict = _verdict(item, previous, previous_ttl_ms, current, current_ttl_ms)
    assert (verdict.limit, verdict.remaining) == (100, remaining)
    assert verdict.reset_s == (math.ceil(min(resets)) if resets else 0)


async def test_rate_limits_fail_open_and_count_it_when_redis_is_unreachable() -> None:
    pool = BlockingConnectionPool.from_url("redis://127.0.0.1:1/0", timeout=1)  # nothing listens on port 1
    limits = RateLimits(get_settings(), pool)
    conn: Any = SimpleNamespace(client=SimpleNamespace(host="127.0.0.1"), state=SimpleNamespace())
    before = ERRORS._value.get()
    try:
        await limits.check(conn, None, "user:x")  # no exception: let through
    finally:
        await pool.aclose()
    assert ERRORS._value.get() == before + 1
    assert getattr(conn.state, "ratelimit", None) is None
