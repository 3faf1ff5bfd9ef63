"""The edge's view of the live feed, used only for `?wait=`: one Redis pattern subscription on the live
pub/sub channels per process resolves futures of commands whose events pass by. WebSocket clients are
served by the relay process (api_edge/relay/), not by the edge."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from infra.live_redis import PUB_PATTERN

log = structlog.get_logger("invmon.edge.live")


class LiveHub:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self.subscribed = asyncio.Event()

    def waiter(self, command_id: str) -> asyncio.Future[None]:
        """A future resolved when an event of this command passes by (the edge's `?wait=`)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[command_id] = future
        future.add_done_callback(lambda _: self._waiters.pop(command_id, None))
        return future

    def _wake(self, payload: bytes) -> None:
        # A substring test keeps the common case (another command) free of JSON parsing.
        for command_id, future in list(self._waiters.items()):
            if command_id.encode() in payload and not future.done():
                future.set_result(None)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="live-hub")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _pump(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(PUB_PATTERN)
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        if message["type"] == "pmessage" and self._waiters:
                            data = message["data"]
                            self._wake(data if isinstance(data, bytes) else str(data).encode())
            except (RedisConnectionError, OSError) as error:
                # A waiter that misses its event answers 202 after its timeout: `?wait=` is best effort.
                self.subscribed.clear()
                log.warning("live_redis_lost", error=repr(error))
                await asyncio.sleep(0.5)
