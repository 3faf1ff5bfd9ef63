"""Helpers shared by the end-to-end tests: wait on conditions, never on fixed sleeps."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import websockets
from aiokafka import AIOKafkaConsumer, TopicPartition
from typer.testing import CliRunner
from websockets.asyncio.client import ClientConnection

from contracts.topics import STOCK_COMMANDS, Topic
from infra.settings import Settings
from invmon.cli import app

CHANNELS = ("inventory", "prices", "alerts")


def new_sku() -> str:
    return f"E2E-{uuid.uuid4().hex[:10].upper()}"


@asynccontextmanager
async def live_session(
    url: str, token: str, channels: tuple[str, ...] = CHANNELS
) -> AsyncIterator[ClientConnection]:
    """A WebSocket relay connection, connected with `token` and subscribed to `channels`."""
    async with websockets.connect(url, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "connect", "token": token}))
        connected = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert connected["type"] == "connected", connected
        for channel in channels:
            await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
            await asyncio.wait_for(_subscribed(ws, channel), 10)
        yield ws


async def _subscribed(ws: ClientConnection, channel: str) -> None:
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "subscribed" and frame["channel"] == channel:
            return


async def next_event(ws: Any, predicate: Any, within: float = 15.0) -> dict[str, Any]:
    """The next event on a `live_session` that `predicate` accepts."""

    async def scan() -> dict[str, Any]:
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "pub" and predicate(frame["event"]):
                return dict(frame["event"])

    return await asyncio.wait_for(scan(), within)


async def wait_for_status(edge: httpx.AsyncClient, command_id: str, within: float = 15.0) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            body = (await edge.get(f"/v1/commands/{command_id}")).json()
            if body["status"] != "unknown":
                return dict(body)
            await asyncio.sleep(0.05)  # poll interval while waiting for a condition

    return await asyncio.wait_for(poll(), within)


def user_token(edge_port: int, name: str, role: str, password: str) -> str:
    """A user made the way an operator would (`invmon user add`), logged in through the edge. Blocking (the
    CLI runs its own event loop): async tests call it through `asyncio.to_thread`."""
    result = CliRunner().invoke(
        app, ["user", "add", name, "--role", role, "--password-stdin"], input=password + "\n"
    )
    assert result.exit_code == 0, result.output
    response = httpx.post(
        f"http://127.0.0.1:{edge_port}/v1/auth/token",
        data={"username": name, "password": password},
        timeout=10.0,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def stock_offsets(settings: Settings, topic: Topic = STOCK_COMMANDS) -> dict[TopicPartition, int]:
    """End offsets of every partition of a command topic: where records published from now on will land."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(settings.kafka_partitions)]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def published(settings: Settings, sku: str, since: dict[TopicPartition, int]) -> list[dict[str, Any]]:
    """Every command record keyed by `sku` on the broker after the offsets `since`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = list(since)
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, since[tp])
        found: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [json.loads(r.value) for r in records if r.key == sku.encode()]
        return found
    finally:
        await consumer.stop()
