"""uvicorn's HTTP protocol, writing each response in one socket send instead of two.

uvicorn writes the status line and headers on `http.response.start` and the body on `http.response.body`,
each straight to the socket. On loopback a send also runs the receiver's TCP path, so every send costs
tens of microseconds of system CPU: at 1,000 requests/s the edge's writes were over half of its CPU
(py-spy, bench.live_e2e). Writes made in one step of the event loop are joined and sent once, at the
next iteration; a response's start and body are sent in the same step, so they leave together.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class JoinedWrites:
    """A transport whose writes of one loop step go out in one `write` of the real transport."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        # A response to a `Connection: close` request is written and closed in the same step.
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class JoinedWritesProtocol(HttpToolsProtocol):
    """`uvicorn.run(..., http=JoinedWritesProtocol)`: httptools parsing, joined response writes."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        joined = JoinedWrites(transport, asyncio.get_running_loop())
        super().connection_made(joined)  # type: ignore[arg-type]
