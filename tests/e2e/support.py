"""Helpers shared by the end-to-end tests: wait on conditions, never on fixed sleeps."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx


def new_sku() -> str:
    return f"E2E-{uuid.uuid4().hex[:10].upper()}"


async def next_event(ws: Any, predicate: Any, within: float = 15.0) -> dict[str, Any]:
    async def scan() -> dict[str, Any]:
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("kind") == "event" and predicate(frame["event"]):
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
