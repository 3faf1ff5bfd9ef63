"""A live protocol client as docs/live-protocol.md asks of every client, for the relay's tests: it keeps its
channel position, reconnects with back-off and `recover`, replaces its state on a snapshot and applies
publications by version. It records every anomaly instead of hiding it: a publication that does not follow
its predecessor (a silent gap), a publication of an unexpected epoch, and every reset and snapshot."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake


@dataclass
class Row:
    on_hand: int
    reserved: int
    version: int


@dataclass
class LiveClient:
    url: str
    token: str
    channel: str = "inventory"
    epoch: str | None = None
    offset: int = 0
    items: dict[str, Row] = field(default_factory=dict)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (expected, got): must stay empty
    foreign_epochs: int = 0  # publications of another epoch without a reset first: must stay 0
    pubs: int = 0
    snapshots: int = 0
    recovered: int = 0
    resets: int = 0
    connections: int = 0
    closes: list[int | None] = field(default_factory=list)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, subscribe and follow until `stop`; reconnect after any loss."""
        while not stop.is_set():
            try:
                async with websockets.connect(self.url, open_timeout=5, max_size=None) as ws:
                    self.connections += 1
                    await self._follow(ws, stop)
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as error:
                if isinstance(error, ConnectionClosed):
                    self.closes.append(error.rcvd.code if error.rcvd else None)
            if not stop.is_set():
                await asyncio.sleep(random.uniform(0.05, 0.3))  # back-off with jitter before reconnecting

    async def _follow(self, ws: Any, stop: asyncio.Event) -> None:
        await ws.send(json.dumps({"type": "connect", "token": self.token}))
        await self._subscribe(ws)
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                receiving = asyncio.create_task(ws.recv())
                done, _ = await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if receiving not in done:
                    receiving.cancel()
                    return
                frame = json.loads(receiving.result())
                if frame["type"] == "reset":
                    self.resets += 1
                    await self._subscribe(ws)
                elif frame["type"] == "subscribed":
                    self._subscribed(frame)
                elif frame["type"] == "pub":
                    self._pub(frame)
                elif frame["type"] == "error" and frame["code"] == "unavailable":
                    await asyncio.sleep(random.uniform(0.05, 0.3))  # back-off, then retry the subscribe
                    await self._subscribe(ws)
                elif frame["type"] == "ping":
                    await ws.send('{"type":"pong"}')
        finally:
            stopping.cancel()

    async def _subscribe(self, ws: Any) -> None:
        message: dict[str, Any] = {"type": "subscribe", "channel": self.channel}
        if self.epoch is not None:
            message["recover"] = {"epoch": self.epoch, "offset": self.offset}
        await ws.send(json.dumps(message))

    def _subscribed(self, frame: dict[str, Any]) -> None:
        if frame["recovered"]:
            self.recovered += 1
            for publication in frame["publications"]:
                self._follows(frame["epoch"], publication["offset"])
                self._apply(publication["event"])
        else:
            self.snapshots += 1
            self.items = {
                row["sku"]: Row(row["on_hand"], row["reserved"], row["version"]) for row in frame["snapshot"]
            }
        self.epoch, self.offset = frame["epoch"], frame["offset"]
        self.subscribed.set()

    def _pub(self, frame: dict[str, Any]) -> None:
        self.pubs += 1
        if frame["epoch"] != self.epoch:
            self.foreign_epochs += 1
        self._follows(frame["epoch"], frame["offset"])
        self._apply(frame["event"])
        self.offset = frame["offset"]

    def _follows(self, epoch: str, offset: int) -> None:
        if epoch == self.epoch and offset != self.offset + 1:
            self.gaps.append((self.offset + 1, offset))
        self.offset = offset

    def _apply(self, event: dict[str, Any]) -> None:
        version = event.get("version")
        if version is None:
            return
        row = self.items.get(event["sku"])
        if row is not None and version <= row.version:
            return  # the snapshot (or an earlier copy of this event) already holds it
        if event["type"] == "item_registered":
            self.items[event["sku"]] = Row(event["on_hand"], 0, version)
        elif row is not None and event["type"] == "stock_changed":
            row.on_hand, row.reserved, row.version = event["on_hand"], event["reserved"], version
        elif row is not None:
            row.version = version
