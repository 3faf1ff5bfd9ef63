"""Rate limits per principal and per client IP, counted atomically in Redis so every edge process shares
them (sliding-window counters from the `limits` library).

When Redis is unreachable the edge lets requests through (fails open) and counts the failure in
`invmon_edge_ratelimit_errors_total`: the broker's own limits and the database still protect the system,
while refusing every command because a cache is down would stop the shop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import structlog
from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import Counter
from redis.asyncio import BlockingConnectionPool

from api_edge.problems import Problem
from infra.settings import Settings

log = structlog.get_logger("invmon.edge.ratelimit")

REJECTED = Counter("invmon_edge_rate_limited_total", "Requests refused with 429, by scope.", ["scope"])
ERRORS = Counter(
    "invmon_edge_ratelimit_errors_total", "Rate-limit checks that failed (Redis down): let through."
)


@dataclass(frozen=True, slots=True)
class Verdict:
    limit: int
    remaining: int
    reset_s: int


class RateLimits:
    def __init__(self, settings: Settings, pool: BlockingConnectionPool) -> None:
        # The edge's bounded pool: a burst waits for a connection instead of failing (and so failing open).
        self._storage = RedisStorage(
            f"async+{settings.redis_url}",
            implementation="redispy",
            connection_pool=pool,  # type: ignore[arg-type]  # passed through to redis-py; the stub is narrow
        )
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._principal = parse(settings.rate_limit_principal)
        self._ip = parse(settings.rate_limit_ip)

    async def _hit(self, item: RateLimitItem, scope: str, key: str) -> Verdict:
        allowed = await self._limiter.hit(item, scope, key)
        stats = await self._limiter.get_window_stats(item, scope, key)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        if not allowed:
            REJECTED.labels(scope).inc()
            raise Problem(
                429,
                "Too Many Requests",
                f"rate limit {item} per {scope} exceeded",
                type_="/problems/rate-limited",
                headers={
                    "Retry-After": str(max(reset, 1)),
                    **ratelimit_headers(Verdict(item.amount, 0, reset)),
                },
            )
        return Verdict(item.amount, stats.remaining, reset)

    async def check(self, request: Request, principal: str | None) -> None:
        """Count this request against its client IP (principal None) or its principal; 429 when over."""
        if principal is None:
            item, scope, key = self._ip, "ip", request.client.host if request.client else "unknown"
        else:
            item, scope, key = self._principal, "principal", principal
        try:
            verdict = await self._hit(item, scope, key)
        except Problem:
            raise
        except Exception as error:  # Redis down or slow: fail open, loudly
            ERRORS.inc()
            log.warning("ratelimit_unavailable", error=repr(error))
            return
        # The principal's verdict is the one the caller can act on; the IP's only fills in before login.
        if principal is not None or getattr(request.state, "ratelimit", None) is None:
            request.state.ratelimit = verdict


def ratelimit_headers(verdict: Verdict) -> dict[str, str]:
    """The headers of a verdict; the request metrics middleware adds those of `request.state.ratelimit`."""
    return {
        "RateLimit-Limit": str(verdict.limit),
        "RateLimit-Remaining": str(verdict.remaining),
        "RateLimit-Reset": str(verdict.reset_s),
    }
