"""An Idempotency-Key request while Redis is unreachable fails closed with 503 problem+json before
anything is published; storing or releasing the answer afterwards never fails the request."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.asyncio import Redis
from starlette.requests import Request

from api_edge import command_ids, idempotency
from api_edge.problems import Problem
from infra.settings import Settings

pytestmark = [pytest.mark.timeout(30)]


def keyed_request(key: str, body: bytes = b"{}") -> Request:
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


async def test_unreachable_redis_answers_503_and_a_stored_answer_lost_is_only_logged() -> None:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)  # nothing listens on port 1
    id_key = command_ids.key(Settings(environment="local"))
    try:
        with pytest.raises(Problem) as refused:
            await idempotency.claim(redis, keyed_request("k1"), "user:a", 3600, id_key)
        assert refused.value.status == 503
        assert refused.value.headers == {"Retry-After": "2"}
        claim = idempotency.Claim("invmon:idem:x", "print", uuid.uuid4())
        await idempotency.complete(redis, claim, idempotency.Stored(202, {}, None), 3600)
        await idempotency.release(redis, claim)
    finally:
        await redis.aclose()
