"""Live events over WebSocket: one Redis pattern subscription per process, fanned out to bounded
per-client queues. A slow client is disconnected; it never slows the others.

Gap handling is deliberately explicit: after the Redis subscription is re-established every client gets a
`{"kind": "resync"}` frame, telling it that it may have missed events and should reload its snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from api_edge.auth import decode_token
from api_edge.problems import Problem

log = structlog.get_logger("invmon.edge.live")

CLIENTS = Gauge("invmon_live_clients", "Connected WebSocket clients.")
DELIVERED = Counter("invmon_live_frames_total", "Frames queued to WebSocket clients.")
DROPPED = Counter("invmon_live_slow_clients_total", "Clients disconnected because their queue was full.")

EVENTS_PATTERN = "invmon:events:*"
QUEUE_LIMIT = 1000
SLOW_CLIENT_CLOSE = 1013  # "try again later": the client fell too far behind
POLICY_VIOLATION = 1008


class LiveHub:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queues: set[asyncio.Queue[str | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self.subscribed = asyncio.Event()

    def waiter(self, command_id: str) -> asyncio.Future[None]:
        """A future resolved when an event of this command passes by (the edge's `?wait=`)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[command_id] = future
        future.add_done_callback(lambda _: self._waiters.pop(command_id, None))
        return future

    def _wake(self, payload: str) -> None:
        # A substring test keeps the common case (nobody waiting, or another command) free of JSON parsing.
        for command_id, future in list(self._waiters.items()):
            if command_id in payload and not future.done():
                future.set_result(None)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._pump(), name="live-hub")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queue in list(self._queues):
            self._offer(queue, None)

    def attach(self) -> asyncio.Queue[str | None]:
        queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LIMIT)
        self._queues.add(queue)
        CLIENTS.set(len(self._queues))
        return queue

    def detach(self, queue: asyncio.Queue[str | None]) -> None:
        self._queues.discard(queue)
        CLIENTS.set(len(self._queues))

    def broadcast(self, frame: str) -> None:
        for queue in list(self._queues):
            if not self._offer(queue, frame):
                DROPPED.inc()
                self.detach(queue)
                # The None sentinel needs a free slot: make one by dropping the oldest frame.
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                self._offer(queue, None)

    @staticmethod
    def _offer(queue: asyncio.Queue[str | None], item: str | None) -> bool:
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        DELIVERED.inc()
        return True

    async def _pump(self) -> None:
        first = True
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.psubscribe(EVENTS_PATTERN)
                    self.subscribed.set()
                    if not first:
                        self.broadcast(json.dumps({"kind": "resync"}))
                    first = False
                    async for message in pubsub.listen():
                        if message["type"] == "pmessage":
                            data = message["data"]
                            payload = data.decode() if isinstance(data, bytes) else str(data)
                            if self._waiters:
                                self._wake(payload)
                            self.broadcast(f'{{"kind":"event","event":{payload}}}')
            except (RedisConnectionError, OSError) as error:
                self.subscribed.clear()
                log.warning("live_redis_lost", error=repr(error))
                await asyncio.sleep(0.5)


router = APIRouter(tags=["live"])


@router.websocket("/v1/live")
async def live(websocket: WebSocket) -> None:
    """Every event the pipeline publishes, as JSON frames `{"kind": "event", "event": {...}}`.
    Authenticate with `?token=<access token>` (viewer role)."""
    try:
        principal = decode_token(websocket, websocket.query_params.get("token", ""))
    except Problem:
        await websocket.close(POLICY_VIOLATION, "authentication required")
        return
    if not principal.has("viewer"):
        await websocket.close(POLICY_VIOLATION, "viewer role required")
        return
    hub: LiveHub = websocket.app.state.clients.hub
    await websocket.accept()
    queue = hub.attach()
    try:
        await websocket.send_text(json.dumps({"kind": "hello"}))
        while (frame := await queue.get()) is not None:
            await websocket.send_text(frame)
        await websocket.close(SLOW_CLIENT_CLOSE, "client too slow")
    except WebSocketDisconnect:
        pass
    finally:
        hub.detach(queue)
