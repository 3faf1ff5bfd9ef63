"""Rate limits per principal and per client IP, counted atomically in Redis so every edge process shares
them: the sliding-window counters of the `limits` library (its items, keys and algorithm), with both scopes
of a request checked and counted in ONE Lua script. The script calls of concurrent requests go to Redis
together, as one pipeline (`_Coalescer`): redis-py spends ~200 us of CPU on a lone call (pool checkout,
timeouts, parsing) and a few us per call inside a pipeline, and at load the rate-limit call was the
largest piece of a command request's CPU.

The script is the library's `acquire_sliding_window` followed by its `sliding_window` read, once per scope,
in order: the IP first; a refusal stops there (a refused hit counts nothing, as in the library), so a
refused IP does not spend the principal's quota. It returns each window's counts and TTLs, from which the
`RateLimit-*` headers are computed exactly as `SlidingWindowCounterRateLimiter.get_window_stats` does.

A steady caller takes its hits in leases (`_Lease`): one script call counts the hits this process expects
the key to need for the next INVMON_RATE_LIMIT_LEASE_MS (its recent rate), and the requests spend them
without a round trip. At 1,000 requests/s the call per request was a quarter of the edge's CPU (its socket
send and read). Limits stay exact where they bite: a lease is taken only when every scope has room for all
of it, and is at most 1 % of the smallest limit (none for limits under 200), so near its limit a key is
counted hit by hit as before. Hits a lease counted and no request used go back with the key's next call
while their window is still the current one; otherwise (the process stopped, the key went quiet past its
window) they stay counted, at most one lease per key and process. The headers of a leased hit are the
grant's window with the unused hits taken off: what this process knows, as any answer is.

When Redis is unreachable the edge lets requests through (fails open) and counts the failure in
`invmon_edge_ratelimit_errors_total`: the broker's own limits and the database still protect the system,
while refusing every command because a cache is down would stop the shop.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import structlog
from limits import RateLimitItem, parse
from prometheus_client import Counter
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from starlette.requests import HTTPConnection

from api_edge.problems import Problem
from infra.settings import Settings

log = structlog.get_logger("invmon.edge.ratelimit")

REJECTED = Counter("invmon_edge_rate_limited_total", "Requests refused with 429, by scope.", ["scope"])
ERRORS = Counter(
    "invmon_edge_ratelimit_errors_total", "Rate-limit checks that failed (Redis down): let through."
)

KEY_PREFIX = "LIMITS"  # the `limits` library's Redis key prefix and window keys, so its tools still apply

# KEYS: previous and current window key of each scope, in order. ARGV: limit and expiry (s) of each scope,
# then the hits wanted (a lease: taken only if every scope has room for all of them, else one) and the
# unused hits of an earlier lease to give back to each scope's current window (skipped if it just ended).
# Per scope checked: {allowed 0/1, previous count, previous ttl ms, current count, current ttl ms, hits}.
_HIT_ALL = """
local want = tonumber(ARGV[#ARGV - 1])
local back = tonumber(ARGV[#ARGV])
local windows = {}
local hits = want
for i = 1, (#ARGV - 2) / 2 do
    local previous_key, current_key = KEYS[2 * i - 1], KEYS[2 * i]
    local limit = tonumber(ARGV[2 * i - 1])
    local expiry = tonumber(ARGV[2 * i]) * 1000
    local current_ttl = tonumber(redis.call('pttl', current_key))
    if current_ttl > 0 and current_ttl < expiry then
        -- the current window expired: it becomes the previous one
        redis.call('rename', current_key, previous_key)
        redis.call('set', current_key, 0, 'PX', current_ttl + expiry)
    elseif back > 0 and current_ttl > 0 then
        local counted = tonumber(redis.call('get', current_key)) or 0
        redis.call('decrby', current_key, math.min(back, counted))
    end
    local previous_count = tonumber(redis.call('get', previous_key)) or 0
    local previous_ttl = math.max(tonumber(redis.call('pttl', previous_key)), 0)
    local current_count = tonumber(redis.call('get', current_key)) or 0
    current_ttl = math.max(tonumber(redis.call('pttl', current_key)), 0)
    local used = math.floor(previous_count * previous_ttl / expiry) + current_count
    if used + want > limit then
        hits = 1
    end
    windows[i] = {limit, expiry, used, previous_count, previous_ttl, current_count, current_ttl}
end
local result = {}
for i, w in ipairs(windows) do
    local limit, expiry, used, previous_count, previous_ttl, current_count, current_ttl = unpack(w)
    local current_key = KEYS[2 * i]
    local allowed = used + hits <= limit
    if allowed then
        if redis.call('exists', current_key) == 1 then
            redis.call('incrby', current_key, hits)
        else
            redis.call('set', current_key, hits, 'PX', expiry * 2)
            current_ttl = expiry * 2
        end
        current_count = current_count + hits
    end
    result[i] = {allowed and 1 or 0, previous_count, previous_ttl, current_count, current_ttl, hits}
    if not allowed then
        break
    end
end
return result
"""
LEASE_SHARE = 100  # a lease is at most this fraction (1/100) of the smallest limit it counts against
_WINDOW_MARGIN_S = 0.05  # no lease, and no hits given back, this close to the end of their window


@dataclass(frozen=True, slots=True)
class Verdict:
    limit: int
    remaining: int
    reset_s: int


@dataclass(frozen=True, slots=True)
class _Scope:
    name: str  # "ip", "principal" or "login" (an account name at the login route)
    item: RateLimitItem
    key: str


@functools.lru_cache(maxsize=10_000)  # the same few principals and IPs, request after request
def _window_keys(scope: _Scope) -> tuple[str, str]:
    """(previous, current) window keys, named as the library's RedisStorage names them."""
    current = f"{KEY_PREFIX}:{{{scope.item.key_for(scope.name, scope.key)}}}"
    return f"{current}/-1", current


def _verdict(
    item: RateLimitItem, previous: int, previous_ttl_ms: int, current: int, current_ttl_ms: int
) -> Verdict:
    """`SlidingWindowCounterRateLimiter.get_window_stats`, on the counts read right after the hit."""
    expiry = item.get_expiry()
    previous_ttl, current_ttl = previous_ttl_ms / 1000, current_ttl_ms / 1000
    remaining = max(0, item.amount - math.floor(previous * previous_ttl / expiry + current))
    reset_in = math.inf
    if previous:
        reset_in = previous_ttl % (expiry / previous)
    if current:
        reset_in = min(reset_in, current_ttl % expiry)
    return Verdict(item.amount, remaining, 0 if math.isinf(reset_in) else math.ceil(reset_in))


_Call = tuple[bytes, "asyncio.Future[list[list[int]]]"]  # (the packed EVALSHA, the caller's answer)


def _resp(*parts: str | int) -> bytes:
    """One command in the Redis protocol (RESP): an array of bulk strings."""
    encoded = [str(part).encode() for part in parts]
    return b"".join([b"*%d\r\n" % len(encoded), *(b"$%d\r\n%s\r\n" % (len(e), e) for e in encoded)])


@functools.lru_cache(maxsize=10_000)  # keyed like _window_keys: the same few principals and IPs
def _packed_scopes(sha: str, scopes: tuple[_Scope, ...]) -> tuple[int, bytes]:
    """The script call's parts that never change for these scopes (the script reads the clock), packed
    once: redis-py's packing of the call was ~5 % of a command request's CPU. (Their count, their bytes.)"""
    keys = [key for scope in scopes for key in _window_keys(scope)]
    args = [value for scope in scopes for value in (scope.item.amount, scope.item.get_expiry())]
    parts = _resp("EVALSHA", sha, len(keys), *keys, *args)
    return 3 + len(keys) + len(args), parts[parts.index(b"\r\n") + 2 :]


def _evalsha(sha: str, scopes: tuple[_Scope, ...], want: int = 1, back: int = 0) -> bytes:
    """The script call for these scopes: `want` hits (a lease when more than one), `back` given back."""
    count, parts = _packed_scopes(sha, scopes)
    tail = _resp(want, back)
    return b"*%d\r\n%s%s" % (count + 2, parts, tail[tail.index(b"\r\n") + 2 :])


class _Coalescer:
    """Runs the script for every caller that arrives while the previous round trip is out, as ONE
    pipeline (no MULTI: each call is its own atomic script, as when sent alone). One pipeline is in flight
    at a time, so under load a call waits at most one round trip before it goes; alone, it goes at once.
    A failed round trip fails every call in it (the caller fails open).

    With one round trip in flight, one connection is enough: it is taken from the pool once and kept.
    Taking it for every round trip cost ~70 us of CPU per check (the pool's lock and bookkeeping, and a
    read on the socket to check it), a third of an edge request; the pipeline object added more."""

    def __init__(self, pool: ConnectionPool, script: str) -> None:
        self._pool = pool
        self._redis = Redis(connection_pool=pool)  # SCRIPT LOAD only
        self._connection: AbstractConnection | None = None
        self._script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()  # Redis names scripts by their SHA-1
        self._pending: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None

    async def call(self, command: bytes) -> list[list[int]]:
        """The script's answer to `command` (an EVALSHA of this script, packed by `_evalsha`)."""
        future: asyncio.Future[list[list[int]]] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                calls, self._pending = self._pending, []
                results: list[object]
                try:
                    results = await self._run(calls)
                except Exception as error:  # handed to every caller of this round trip
                    results = [error] * len(calls)
                for (_, future), result in zip(calls, results, strict=True):
                    if future.done():  # the caller went away (cancelled)
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(cast(list[list[int]], result))
        finally:
            self._flusher = None

    async def _run(self, calls: Sequence[_Call]) -> list[object]:
        try:
            results = await self._pipeline(calls)
        except (RedisConnectionError, OSError):
            # The kept connection went away between round trips (Redis restarted, a proxy timed it out):
            # once more on a new one, as redis-py's own retry would.
            results = await self._pipeline(calls)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:  # Redis restarted or its scripts were flushed: load once, run those calls again
            await self._redis.script_load(self._script)
            for i, result in zip(missing, await self._pipeline([calls[i] for i in missing]), strict=True):
                results[i] = result
        return results

    async def _pipeline(self, calls: Sequence[_Call]) -> list[object]:
        if self._connection is None:
            self._connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        connection = self._connection
        try:
            await connection.send_packed_command(
                b"".join([command for command, _ in calls]), check_health=False
            )
            results: list[object] = []
            for _ in calls:
                try:
                    results.append(await connection.read_response())
                except ResponseError as error:  # that call's answer (NOSCRIPT among them); still in step
                    results.append(error)
            return results
        except BaseException:
            # Broken off mid-exchange: replies may be out of step with calls, so the connection goes.
            self._connection = None
            await connection.disconnect()
            await self._pool.release(connection)
            raise


_Window = tuple[int, int, int, int]  # previous count, previous ttl ms, current count, current ttl ms
_MAX_KEYS = 10_000  # leased keys remembered per process; when full, the oldest go (their hits stay counted)


@dataclass(slots=True)
class _Lease:
    """One key's (set of scopes') hits counted in Redis ahead of its requests, and its recent demand."""

    tokens: int = 0  # counted, not yet used by a request
    until: float = 0.0  # loop time: the tokens are used before it, given back after it
    window_end: float = 0.0  # loop time the current window of `windows` may end (their earliest)
    seen: float = 0.0  # loop time `windows` were read
    windows: Sequence[_Window] = ()  # each scope's window, as the key's latest call answered
    last_call: float = 0.0  # loop time of the key's previous script call
    hits: int = 0  # requests since then
    leasing: bool = False  # a call for a lease is out: the others wait for none, and ask for one hit

    def want(self, now: float, lease_s: float, cap: int) -> int:
        """The hits to ask for: what the key used per lease period lately, growing at most twofold."""
        if (
            cap < 2
            or self.leasing
            or not self.last_call
            or now + lease_s > self.window_end - _WINDOW_MARGIN_S
        ):
            return 1  # (a lease would outlive the window it is counted in: its unused hits could not go back)
        rate = (self.hits + 1) / max(now - self.last_call, 0.001)
        return max(1, min(cap, math.ceil(rate * lease_s), 2 * (self.hits + 1)))


class RateLimits:
    def __init__(self, settings: Settings, pool: ConnectionPool) -> None:
        # The script calls keep one of the pool's connections; SCRIPT LOAD borrows another when needed.
        self._script = _Coalescer(pool, _HIT_ALL)
        self._principal = parse(settings.rate_limit_principal)
        self._ip = parse(settings.rate_limit_ip)
        self._login = parse(settings.rate_limit_login_account)
        self._lease_s = settings.rate_limit_lease_ms / 1000
        self._leases: dict[tuple[_Scope, ...], _Lease] = {}

    async def check(self, conn: HTTPConnection, *principals: str | None) -> None:
        """Count this request against each scope in order, in one round trip: `None` is the client IP,
        a string the principal. 429 with the refusing limit's headers when one is over; the verdict of
        the last scope (the principal's, the one the caller can act on) goes on the response."""
        await self._check(
            conn,
            [
                self._ip_scope(conn) if principal is None else _Scope("principal", self._principal, principal)
                for principal in principals or (None,)
            ],
        )

    async def check_login(self, conn: HTTPConnection, username: str) -> None:
        """A login attempt: counted against the client IP, then against the account name from any
        address, so guessing one account's password from many addresses is slowed as much as from one.
        The name is hashed: any string may be sent, and it only names a counter."""
        account = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()
        await self._check(conn, [self._ip_scope(conn), _Scope("login", self._login, account)], lease=False)

    def _ip_scope(self, conn: HTTPConnection) -> _Scope:
        # The peer, or the client a trusted proxy named (uvicorn's proxy headers, INVMON_TRUSTED_PROXIES).
        return _Scope("ip", self._ip, conn.client.host if conn.client else "unknown")

    async def _check(self, conn: HTTPConnection, scopes: list[_Scope], *, lease: bool = True) -> None:
        key = tuple(scopes)
        now = asyncio.get_running_loop().time()
        held = self._leases.get(key) if lease and self._lease_s > 0 else None
        if held is not None and held.tokens and now < held.until:
            held.tokens -= 1
            held.hits += 1
            self._answer(conn, scopes, held, now)
            return
        want, back = 1, 0
        if lease and self._lease_s > 0:
            if held is None:
                if len(self._leases) >= _MAX_KEYS:
                    for stale in list(self._leases)[: _MAX_KEYS // 10]:  # insertion order: oldest first
                        del self._leases[stale]
                held = self._leases[key] = _Lease()
            if held.tokens:  # expired: back to the window they were counted in, if it is still current
                back = held.tokens if now < held.window_end - _WINDOW_MARGIN_S else 0
                held.tokens = 0
            want = held.want(now, self._lease_s, min(scope.item.amount for scope in scopes) // LEASE_SHARE)
            held.last_call, held.hits = now, 0
            held.leasing = held.leasing or want > 1
        try:
            windows = await self._script.call(_evalsha(self._script.sha, key, want, back))
        except Exception as error:  # Redis down or slow: fail open, loudly
            ERRORS.inc()
            log.warning("ratelimit_unavailable", error=repr(error))
            return
        finally:
            if want > 1 and held is not None:
                held.leasing = False
        if held is not None and len(windows) == len(scopes) and all(w[0] for w in windows):
            # Every answer of the key's calls refreshes what the process knows of its windows: a hit
            # taken from the lease later is reported against the newest of them.
            held.seen = asyncio.get_running_loop().time()
            held.windows = [(int(w[1]), int(w[2]), int(w[3]), int(w[4])) for w in windows]
            held.window_end = held.seen + min(
                (int(w[4]) - scope.item.get_expiry() * 1000) / 1000
                for scope, w in zip(scopes, windows, strict=True)
            )
            if want > 1:
                self._grant(held, windows)
            self._answer(conn, scopes, held, held.seen)
            return
        verdict: Verdict | None = None
        for scope, (allowed, *window) in zip(scopes, windows, strict=False):
            verdict = _verdict(scope.item, *(int(x) for x in window[:4]))
            if not allowed:
                REJECTED.labels(scope.name).inc()
                refused = Verdict(verdict.limit, 0, verdict.reset_s)
                raise Problem(
                    429,
                    "Too Many Requests",
                    f"rate limit {scope.item} per {scope.name} exceeded",
                    type_="/problems/rate-limited",
                    headers={"Retry-After": str(max(refused.reset_s, 1)), **ratelimit_headers(refused)},
                )
        # The principal's verdict is the one the caller can act on; the IP's only fills in before login.
        if scopes[-1].name != "ip" or getattr(conn.state, "ratelimit", None) is None:
            conn.state.ratelimit = verdict

    def _grant(self, held: _Lease, windows: list[list[int]]) -> None:
        """Keep the hits a lease call counted beyond its own request's."""
        hits = int(windows[0][5])
        if hits > 1:
            held.tokens = hits - 1  # one lease call at a time, made once the previous lease was used up
            held.until = min(held.seen + self._lease_s, held.window_end - _WINDOW_MARGIN_S)

    def _answer(self, conn: HTTPConnection, scopes: list[_Scope], held: _Lease, now: float) -> None:
        """The verdict of the key's latest window, aged, without the lease's unused hits."""
        elapsed_ms = int((now - held.seen) * 1000)
        previous, previous_ttl, current, current_ttl = held.windows[-1]
        verdict = _verdict(
            scopes[-1].item,
            previous,
            max(previous_ttl - elapsed_ms, 0),
            current - held.tokens,
            max(current_ttl - elapsed_ms, 0),
        )
        if scopes[-1].name != "ip" or getattr(conn.state, "ratelimit", None) is None:
            conn.state.ratelimit = verdict


def ratelimit_headers(verdict: Verdict) -> dict[str, str]:
    """The headers of a verdict; the request metrics middleware adds those of `request.state.ratelimit`."""
    return {
        "RateLimit-Limit": str(verdict.limit),
        "RateLimit-Remaining": str(verdict.remaining),
        "RateLimit-Reset": str(verdict.reset_s),
    }
