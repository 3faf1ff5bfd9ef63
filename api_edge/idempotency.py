"""`Idempotency-Key`: the same key and request from the same principal get the original answer and publish
nothing new; the same key with another request is refused. Answers live in Redis for a day.

The command id itself derives from (principal, key) under a server key (`api_edge.command_ids`), so even
if Redis forgot the answer, a retry publishes the same command id and the pipeline still applies it once;
and nobody can predict, let alone take, the id another principal's key will get.

Redis unreachable (a failover, an outage): a request with a key fails closed, before anything is published,
with 503 and Retry-After: without the stored fingerprint a reused key with another body could not be
refused, and its command (same derived id) would be dropped downstream as a duplicate. Once the command is
published, a failure to store the answer is only logged: the answer is still given, and a retry after
the claim's short pending TTL publishes the same command id again (applied once).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api_edge import command_ids
from api_edge.problems import Problem

log = structlog.get_logger("invmon.edge.idempotency")

MAX_KEY_LENGTH = 200
# A claim not completed within this long is abandoned (the edge died mid-request, or Redis failed before the
# answer was stored): a retry may then run. Longer than any request: publish timeout + the longest ?wait=.
PENDING_TTL_S = 120


@dataclass(frozen=True, slots=True)
class Claim:
    redis_key: str
    fingerprint: str
    command_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Stored:
    status: int
    body: dict[str, Any]
    location: str | None


async def fingerprint(request: Request) -> str:
    body = await request.body()
    return hashlib.sha256(
        b"%s %s\n%s" % (request.method.encode(), request.url.path.encode(), body)
    ).hexdigest()


def redis_key(principal: str, key: str) -> str:
    """One Redis key per (principal, key) pair: both length-prefixed before hashing, since a principal
    may contain any character (joined with ':', "user:a:b" + "c" and "user:a" + "b:c" met)."""
    return "invmon:idem:" + hashlib.sha256(command_ids.length_prefixed(principal, key)).hexdigest()


async def claim(
    redis: Redis, request: Request, principal: str, ttl_s: int, id_key: hmac.HMAC
) -> tuple[Claim | None, Stored | None]:
    """(claim to complete, None) for a new key; (None, stored answer) for a replay; raises on misuse."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None, None
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Problem(400, "Bad Idempotency-Key", f"use 1 to {MAX_KEY_LENGTH} characters")
    print_ = await fingerprint(request)
    stored_at = redis_key(principal, key)
    command_id = command_ids.from_idempotency_key(id_key, principal, key)
    pending = json.dumps({"fingerprint": print_, "state": "pending"})
    try:
        if await redis.set(stored_at, pending, nx=True, ex=min(ttl_s, PENDING_TTL_S)):
            return Claim(stored_at, print_, command_id), None
        raw = await redis.get(stored_at)
    except (RedisError, OSError) as error:
        log.warning("idempotency_unavailable", error=repr(error))
        raise Problem(
            503,
            "Idempotency store unavailable",
            "the store of Idempotency-Key answers is unreachable; nothing was published: retry with the "
            "same key",
            type_="/problems/idempotency-unavailable",
            headers={"Retry-After": "2"},
        ) from error
    record = json.loads(raw) if raw else {}
    if record.get("fingerprint") != print_:
        raise Problem(
            422,
            "Idempotency-Key reused",
            "this key was used with a different request",
            type_="/problems/idempotency-key-reused",
        )
    if record.get("state") != "done":
        raise Problem(409, "Request in progress", "a request with this key is still being processed",
                      headers={"Retry-After": "1"})  # fmt: skip
    return None, Stored(int(record["status"]), record["body"], record.get("location"))


async def complete(redis: Redis, done: Claim, stored: Stored, ttl_s: int) -> None:
    record = {
        "fingerprint": done.fingerprint,
        "state": "done",
        "status": stored.status,
        "body": stored.body,
        "location": stored.location,
    }
    try:
        await redis.set(done.redis_key, json.dumps(record), ex=ttl_s)
    except (RedisError, OSError) as error:  # published already: answer anyway (see the module doc)
        log.warning("idempotency_answer_not_stored", error=repr(error))


async def release(redis: Redis, failed: Claim) -> None:
    """The request failed before the broker accepted it: let a retry with the same key run again."""
    try:
        await redis.delete(failed.redis_key)
    except (RedisError, OSError) as error:  # the claim expires after PENDING_TTL_S instead
        log.warning("idempotency_claim_not_released", error=repr(error))
