"""The edge's hot-path shortcuts keep their promises: the verified-token cache honours expiry and never
stands in for verification, the rate-limit headers are the `limits` library's figures, and rate limiting
fails open (counted) when Redis is unreachable."""

from __future__ import annotations

import math
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from limits import parse
from pydantic import SecretStr
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.connection import Connection

from api_edge import auth, batch
from api_edge.auth import Principal, decode_token
from api_edge.problems import Problem
from api_edge.ratelimit import ERRORS, RateLimits, _evalsha, _Scope, _verdict, _window_keys
from infra.settings import Settings, get_settings


def request_for(settings: Settings) -> Any:
    return SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(clients=SimpleNamespace(settings=settings)))
    )


def cache_key(settings: Settings, token: str) -> tuple[str, str, str, str]:
    return (token, settings.jwt_key(), settings.jwt_audience, settings.jwt_issuer)


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
    now = int(time.time())
    token = auth.issue_token(settings, "user:cached", ["viewer"], now).access_token
    assert decode_token(request_for(settings), token) == Principal("user:cached", frozenset({"viewer"}), now)
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


@pytest.mark.parametrize("subject", ["user:alice", "user:\u00e9l\u00e8ve", "key:7f3c"])
def test_the_packed_script_call_is_what_redis_py_sends(subject: str) -> None:
    """The check packs its EVALSHA once per set of scopes; the bytes must be redis-py's own packing."""
    scopes = (
        _Scope("ip", parse("50/second"), "127.0.0.1"),
        _Scope("principal", parse("100/minute"), subject),
    )
    keys = [key for scope in scopes for key in _window_keys(scope)]
    expected = Connection().pack_command("EVALSHA", "ab" * 20, 4, *keys, 50, 1, 100, 60, 1, 0)
    assert _evalsha("ab" * 20, scopes) == b"".join(expected)
    leased = Connection().pack_command("EVALSHA", "ab" * 20, 4, *keys, 50, 1, 100, 60, 37, 120)
    assert _evalsha("ab" * 20, scopes, 37, 120) == b"".join(leased)


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


@pytest.mark.parametrize("start", [b"\x00" * 4, b"\xff\xff\xff\xf0"])  # the counter at 0 and near wrapping
def test_batch_ids_are_distinct_version_4_uuids(monkeypatch: pytest.MonkeyPatch, start: bytes) -> None:
    monkeypatch.setattr(batch.os, "urandom", lambda n: bytes(range(n - 4)) + start)
    ids = batch._random_ids(40)
    parsed = [uuid.UUID(text) for text in ids]
    assert [str(u) for u in parsed] == ids  # canonical text, as the answer gives it
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(ids)) == 40
    monkeypatch.undo()
    assert not set(ids) & set(batch._random_ids(40))  # another batch: other random bits
