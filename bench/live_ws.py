"""Shared parts of the live benchmarks: a minimal WebSocket client (asyncio Protocol) that speaks the live
protocol and measures publish -> receipt, latency histograms that merge across processes, RSS sampling.

The client is deliberately small: it parses server frames itself (they are never masked) and pulls the
offset and the publish timestamp out of the frame bytes without decoding JSON, so that a thousand clients
and the relay can share two cores. Client frames (connect, subscribe, pong) are masked as RFC 6455 asks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency

BUCKET_US = 100  # histogram resolution: 0.1 ms


def masked(text: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(text)
    header = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
    return header + mask + body


@dataclass
class Tally:
    """What one process's clients saw: frames, offset gaps, and publish -> receipt latencies."""

    received: int = 0
    gaps: int = 0
    closed: int = 0
    hist: Counter[int] = field(default_factory=Counter)  # latency bucket (0.1 ms) -> count
    first_ns: int = 0
    last_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "gaps": self.gaps,
            "closed": self.closed,
            "hist": dict(self.hist),
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
        }


def merge(tallies: list[dict[str, Any]]) -> Tally:
    total = Tally()
    for t in tallies:
        total.received += t["received"]
        total.gaps += t["gaps"]
        total.closed += t["closed"]
        total.hist.update({int(k): v for k, v in t["hist"].items()})
        if t["first_ns"]:
            total.first_ns = min(total.first_ns or t["first_ns"], t["first_ns"])
        total.last_ns = max(total.last_ns, t["last_ns"])
    return total


def percentile_ms(hist: Counter[int], q: float) -> float:
    count = sum(hist.values())
    if count == 0:
        return float("nan")
    rank, seen = q / 100 * count, 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return (bucket + 1) * BUCKET_US / 1000
    return float("nan")


class LiveClient(asyncio.Protocol):
    """One connection: handshake, connect, subscribe, then count publications. `stamp(frame)` returns the
    publish time (monotonic ns) a frame carries, or None. `subscribe` replaces the default subscribe
    message (`inventory`, unfiltered), e.g. to add a filter; a filtered subscription skips offsets, so
    its tally's gaps mean nothing."""

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        tally: Tally,
        subscribed: Callable[[], None],
        stamp: Callable[[bytes], int | None],
        subscribe: dict[str, Any] | None = None,
    ) -> None:
        self._request = (
            f"GET /v1/live HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self._token = token
        self._tally = tally
        self._subscribed = subscribed
        self._stamp = stamp
        self._subscribe = subscribe or {"type": "subscribe", "channel": "inventory"}
        self._buf = bytearray()
        self._open = False
        self._offset = -1
        self.received = 0
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self._tally.closed += 1

    def _send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.write(masked(json.dumps(message).encode()))

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in bytes(buf[: buf.find(b"\r\n")]):
                raise RuntimeError(f"handshake refused: {bytes(buf[:200])!r}")
            del buf[: end + 4]
            self._open = True
            self._send({"type": "connect", "token": self._token})
            self._send(self._subscribe)
        at = 0
        size = len(buf)
        while size - at >= 2:
            n = buf[at + 1] & 0x7F
            head = 2
            if n == 126:
                if size - at < 4:
                    break
                n, head = int.from_bytes(buf[at + 2 : at + 4], "big"), 4
            elif n == 127:
                if size - at < 10:
                    break
                n, head = int.from_bytes(buf[at + 2 : at + 10], "big"), 10
            if size - at < head + n:
                break
            self._frame(buf[at] & 0x0F, bytes(buf[at + head : at + head + n]))
            at += head + n
        if at:
            del buf[:at]

    def _frame(self, opcode: int, payload: bytes) -> None:
        if opcode != 1:
            return
        if payload.startswith(b'{"type":"pub"'):
            now = time.monotonic_ns()
            tally = self._tally
            tally.received += 1
            self.received += 1
            if not tally.first_ns:
                tally.first_ns = now
            tally.last_ns = now
            at = payload.index(b'"offset":') + 9
            offset = int(payload[at : payload.index(b",", at)])
            if self._offset >= 0 and offset != self._offset + 1:
                tally.gaps += 1
            self._offset = offset
            sent = self._stamp(payload)
            if sent is not None:
                tally.hist[max(0, now - sent) // (BUCKET_US * 1000)] += 1
        elif payload.startswith(b'{"type":"ping"'):
            self._send({"type": "pong"})
        elif payload.startswith(b'{"type":"subscribed"'):
            self._offset = json.loads(payload)["offset"]
            self._subscribed()


class RssSampler:
    """RSS of a process every `interval_s`, from a thread (the event loop may be busy)."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), self._proc.memory_info().rss))
            except psutil.Error:
                return
            self._stop.wait(self._interval)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> list[int]:
        return [rss for at, rss in self.samples if start <= at <= end]


def mb(value: float) -> str:
    return f"{value / 2**20:.0f} MB"
