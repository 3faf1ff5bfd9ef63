"""The edge's joined response writes (api_edge/http_protocol.py): one send per loop step, nothing lost."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse, StreamingResponse

from api_edge.http_protocol import JoinedWrites, JoinedWritesProtocol


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default


async def test_writes_of_one_step_leave_in_one_send() -> None:
    real = Recorder()
    joined = JoinedWrites(real, asyncio.get_running_loop())
    joined.write(b"HTTP/1.1 202 Accepted\r\n\r\n")
    joined.write(b"")
    joined.writelines([b"{", b"}"])
    assert real.writes == []
    await asyncio.sleep(0)  # one loop iteration: the scheduled flush runs
    assert real.writes == [b"HTTP/1.1 202 Accepted\r\n\r\n{}"]
    joined.write(b"next")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]


async def test_close_sends_what_is_pending_first_and_nothing_after() -> None:
    real = Recorder()
    joined = JoinedWrites(real, asyncio.get_running_loop())
    joined.write(b"last answer")
    joined.close()
    assert real.writes == [b"last answer"]
    assert real.closed
    joined.write(b"too late")
    await asyncio.sleep(0)
    assert real.writes == [b"last answer"]
    assert joined.get_extra_info("peername") == ("127.0.0.1", 1)


@pytest.fixture
async def server() -> object:
    app = FastAPI()

    @app.get("/small")
    async def small() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> object:
            for i in range(200):
                yield f"{i:04d}".encode() * 1000
                await asyncio.sleep(0)

        return StreamingResponse(chunks())  # type: ignore[arg-type]

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # listening before uvicorn starts: the client can connect at once
    config = uvicorn.Config(app, http=JoinedWritesProtocol, ws="none", log_config=None, lifespan="off")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    await task


async def test_uvicorn_serves_keep_alive_close_and_streams_through_it(server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as client:
        for _ in range(3):  # one keep-alive connection, several answers
            r = await client.get("/small")
            assert (r.status_code, r.text) == (200, "ok")
        r = await client.get("/small", headers={"Connection": "close"})
        assert (r.status_code, r.text) == (200, "ok")
        r = await client.get("/stream")
        assert r.text == "".join(f"{i:04d}" * 1000 for i in range(200))
