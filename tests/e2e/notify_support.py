"""Real receivers for notification tests: an HTTP server in the test process whose behaviour depends on
the path, and an aiosmtpd SMTP server that can answer 451 or 550 for chosen recipients."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True, slots=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    status: int


@dataclass
class Receiver:
    """Behaviour by the first path segment:
    /ok 200; /flaky/N 500 for the first N requests of each webhook-id, then 200; /gone 410;
    /missing 404; /redirect 302 to /ok; /busy/S 429 with Retry-After S for the first request, then 200;
    /hold answers 200 once `release` is set; /binary 400 with a NUL and a non-UTF-8 byte in its body."""

    host: str
    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held: asyncio.Event = field(default_factory=asyncio.Event)  # a /hold request is waiting for `release`

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def of(self, prefix: str) -> list[Hit]:
        return [h for h in self.hits if h.path.startswith(prefix)]

    def by_id(self, prefix: str) -> dict[str, list[Hit]]:
        found: dict[str, list[Hit]] = {}
        for hit in self.of(prefix):
            found.setdefault(hit.headers.get("webhook-id", ""), []).append(hit)
        return found

    def _status(self, path: str, msg_id: str) -> tuple[int, dict[str, str]]:
        parts = path.strip("/").split("/")
        seen = sum(1 for h in self.hits if h.path == path and h.headers.get("webhook-id") == msg_id)
        kind = parts[0]
        if kind == "flaky":
            return (500 if seen < int(parts[1]) else 200), {}
        if kind == "gone":
            return 410, {}
        if kind == "missing":
            return 404, {}
        if kind == "redirect":
            return 302, {"location": self.url("/ok")}
        if kind == "binary":
            return 400, {}
        if kind == "busy":
            return (429, {"retry-after": parts[1]}) if seen == 0 else (200, {})
        return 200, {}

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, extra = self._status(request.url.path, headers.get("webhook-id", ""))
        self.hits.append(Hit(request.url.path, headers, body, time.monotonic(), status))
        if request.url.path.startswith("/hold"):
            self.held.set()
            await self.release.wait()
        content = b"refused\x00\xff here" if request.url.path.startswith("/binary") else b""
        return Response(content=content, status_code=status, headers=extra)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST", "GET"])])


@asynccontextmanager
async def serving(host: str) -> AsyncIterator[Receiver]:
    receiver = Receiver(host)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    receiver.port = sock.getsockname()[1]
    # Listening before uvicorn starts: a connection that comes first waits in the backlog until uvicorn
    # accepts it, so there is nothing to wait for (uvicorn offers no "started" event).
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(receiver.app(), log_config=None, lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield receiver
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


@dataclass
class Mailbox:
    """aiosmtpd handler: accepts mail, except that `temporary[rcpt]` DATA commands for a recipient get
    451 first, and recipients in `refused` get 550 at RCPT."""

    messages: list[Message] = field(default_factory=list)
    temporary: dict[str, int] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    temp_failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                if self.temporary.get(rcpt, 0) > 0:
                    self.temporary[rcpt] -= 1
                    self.temp_failures += 1
                    return "451 4.3.0 mailbox busy, try again later"
            self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted"

    def to(self, address: str) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if address in str(m["To"])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield mailbox, controller.port
    finally:
        controller.stop()
