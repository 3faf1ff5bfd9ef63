"""Helpers of the WebSocket relay tests: extra relay processes, direct publications, frame waits."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
import websockets
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from contracts.stock_events import StockChanged
from infra.live_redis import LiveRedis
from infra.settings import Settings
from tests.processes import Process, start, wait_ready


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def relay_process(log_dir: Path, **env: str) -> Iterator[Process]:
    """One more WebSocket relay on a free port, with extra INVMON_* settings."""
    port = free_port()
    process = start("live_relay", port, log_dir, env={"INVMON_LIVE_PORT": str(port), **env})
    try:
        wait_ready(process)
        yield process
    finally:
        process.stop()


def url_of(process: Process) -> str:
    return f"ws://127.0.0.1:{process.port}/v1/live"


def token(settings: Settings, *, ttl: float = 300, subject: str = "user:live-test", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "sub": subject,
        "roles": ["viewer"],
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": int(now + ttl),
        **claims,
    }
    return jwt.encode(payload, settings.jwt_key(), algorithm="HS256")


@asynccontextmanager
async def connected(url: str, bearer: str, **options: Any) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(url, open_timeout=10, **options) as ws:
        await ws.send(json.dumps({"type": "connect", "token": bearer}))
        frame = await next_frame(ws, "connected")
        assert frame["ping_interval_s"] > 0
        yield ws


async def next_frame(
    ws: ClientConnection, type_: str | tuple[str, ...], within: float = 15.0
) -> dict[str, Any]:
    """The next frame of this type, or of one of these types (others are skipped)."""
    types = (type_,) if isinstance(type_, str) else type_

    async def scan() -> dict[str, Any]:
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] in types:
                return frame

    return await asyncio.wait_for(scan(), within)


async def subscribe(ws: ClientConnection, channel: str, **fields: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "subscribe", "channel": channel, **fields}))
    return await next_frame(ws, "subscribed")


async def close_code(ws: ClientConnection, within: float = 15.0) -> tuple[int | None, str]:
    """Read until the relay closes the connection; its close code and reason."""

    async def drain() -> tuple[int | None, str]:
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            return (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else (None, "")

    return await asyncio.wait_for(drain(), within)


def fake_event(sku: str, version: int, pad: int = 0) -> str:
    """A valid stock event for a SKU no item has (so no snapshot or state depends on it)."""
    return StockChanged(
        event_id=uuid.uuid4(),
        sku=sku,
        occurred_at=datetime.now(UTC),
        delta=1,
        reason="x" * pad or "receive_stock",
        on_hand=version,
        reserved=0,
        available=version,
        version=version,
    ).model_dump_json()


async def publish_fake(
    settings: Settings,
    channel: str,
    sku: str,
    count: int,
    *,
    history: int | None = None,
    pad: int = 0,
    chunk: int = 200,
) -> int:
    """Publish `count` events the way the outbox relay does; returns the channel's last offset."""
    redis = Redis.from_url(settings.redis_url)
    try:
        live = LiveRedis(redis)
        last = 0
        for start_at in range(0, count, chunk):
            events = [
                (sku, "stock_changed", fake_event(sku, v + 1, pad))
                for v in range(start_at, min(count, start_at + chunk))
            ]
            last = await live.publish(channel, events, history=history or settings.live_history_size)
        return last
    finally:
        await redis.aclose()


async def metric(process: Process, name: str) -> float:
    """Sum of a Prometheus metric's samples (all labels) from a process's /metrics."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{process.port}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            if head == name or head.startswith(name + "{"):
                total += float(value)
    return total
