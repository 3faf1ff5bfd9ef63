"""The edge's view of the live feed, used only for `?wait=`: a Redis pattern subscription on the live
pub/sub channels resolves futures of commands whose events pass by. WebSocket clients are served by the
relay process (api_edge/relay/), not by the edge.

The subscription is held only while a request waits, and for `idle_s` after the last one. Held always,
every edge process would receive every live publication (~1,000 messages/s at the live benchmark's rate,
~2 % of an edge's CPU) for a feature few requests use."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from infra.live_redis import PUB_PATTERN

log = structlog.get_logger("invmon.edge.live")

POLL_S = 1.0  # how often an idle subscription checks whether it is still wanted


class LiveHub:
    def __init__(self, redis: Redis, idle_s: float) -> None:
        self._redis = redis
        self._idle_s = idle_s
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self.subscribed = asyncio.Event()

    async def waiter(self, command_id: str, within: float) -> asyncio.Future[None]:
        """A future resolved when an event of this command passes by (the edge's `?wait=`). Returns once
        the subscription is in place, so an event published after that is seen, or after `within` seconds
        without it (Redis down: the caller's wait then ends in a 202, as `?wait=` is best effort)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[command_id] = future
        future.add_done_callback(lambda _: self._waiters.pop(command_id, None))
        if self._task is None:
            self._task = asyncio.create_task(self._pump(), name="live-hub")
        if not self.subscribed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.subscribed.wait(), within)
        return future

    def _wake(self, payload: bytes) -> None:
        # A substring test keeps the common case (another command) free of JSON parsing.
        for command_id, future in list(self._waiters.items()):
            if command_id.encode() in payload and not future.done():
                future.set_result(None)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _pump(self) -> None:
        try:
            while self._waiters:
                try:
                    async with self._redis.pubsub() as pubsub:
                        await self._listen(pubsub)
                        # Unwanted for idle_s. Cleared before the unsubscribe's awaits, so a waiter that
                        # comes meanwhile starts a new subscription instead of trusting this one.
                        self.subscribed.clear()
                        self._task = None
                        return
                except (RedisConnectionError, OSError) as error:
                    # A waiter that misses its event answers 202 after its timeout: `?wait=` is best effort.
                    self.subscribed.clear()
                    log.warning("live_redis_lost", error=repr(error))
                    await asyncio.sleep(0.5)
        finally:  # cancelled, or no waiter left after a lost connection; not a successor's state
            if self._task is asyncio.current_task():
                self._task = None
                self.subscribed.clear()

    async def _listen(self, pubsub: PubSub) -> None:
        """Subscribe, wake waiters, and return once nobody has waited for `idle_s`."""
        loop = asyncio.get_running_loop()
        await pubsub.psubscribe(PUB_PATTERN)
        wanted = loop.time()
        while self._waiters or loop.time() - wanted < self._idle_s:
            message = await pubsub.get_message(timeout=POLL_S)
            if self._waiters:
                wanted = loop.time()
            if message is None:
                continue
            if message["type"] == "psubscribe":
                self.subscribed.set()  # confirmed: every later publication comes here
            elif message["type"] == "pmessage" and self._waiters:
                data = message["data"]
                self._wake(data if isinstance(data, bytes) else str(data).encode())
