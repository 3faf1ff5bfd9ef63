"""The front door's config (deploy/nginx/invmon.conf) as the cluster renders it, run by Debian's nginx in
front of stand-in edges and relays on the layout's ports: balancing, routing around a dead copy, never a
POST passed on once sent, WebSocket upgrade, X-Forwarded-For. No cluster needed: the stand-ins are tiny
servers in this process, so each failure mode is exact."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.server import Server, ServerConnection, serve

from infra.settings import Settings
from invmon.stack.cluster_layout import HOST, PROCESS_COPIES, ClusterLayout
from invmon.stack.nginx import DEPLOY_CONF, NginxService, nginx_bin, render_site
from invmon.stack.paths import StackPaths
from invmon.stack.report import Reporter
from invmon.stack.state import StackState

pytestmark = pytest.mark.timeout(120)


def _free_layout() -> ClusterLayout:
    """A layout whose front door and edge/relay ports are all free here (the test's own range)."""
    for base in range(21000, 31000, 1000):
        layout = ClusterLayout(base)
        ports = [layout.nginx_port] + [
            layout.process_port(p, c) for p in ("edge", "live_relay") for c in range(PROCESS_COPIES)
        ]
        with contextlib.ExitStack() as stack:
            try:
                for port in ports:
                    sock = stack.enter_context(socket.socket())
                    # As the servers bind: a port still in TIME_WAIT from the last test is free.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((HOST, port))
            except OSError:
                continue
        return layout
    raise RuntimeError("no free port range for the front-door test")


@dataclass
class FakeEdge:
    """An HTTP/1.1 server with keep-alive that names itself in every answer. `drop`: read a request,
    then close without answering (an edge that died after the request was sent)."""

    name: str
    drop: bool = False
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    open_connections: set[asyncio.StreamWriter] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                await reader.readexactly(int(headers.get("content-length", "0")))
                self.seen.append((method, path, headers))
                if self.drop:
                    return
                body = json.dumps({"edge": self.name, "xff": headers.get("x-forwarded-for")}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_connections.discard(writer)
            writer.close()


class FrontDoor:
    def __init__(self, layout: ClusterLayout, service: NginxService) -> None:
        self.layout, self.service = layout, service
        self.edges = [FakeEdge(f"edge.{c + 1}") for c in range(PROCESS_COPIES)]
        self._edge_servers: list[asyncio.Server | None] = [None] * PROCESS_COPIES
        self.relays: list[Server] = []

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.layout.nginx_port}"

    async def start_edge(self, copy: int) -> None:
        port = self.layout.process_port("edge", copy)
        self._edge_servers[copy] = await asyncio.start_server(self.edges[copy].handle, HOST, port)

    async def stop_edge(self, copy: int) -> None:
        server = self._edge_servers[copy]
        assert server is not None
        server.close()
        for writer in list(self.edges[copy].open_connections):  # nginx's idle keep-alive connections
            writer.close()
        await server.wait_closed()
        self._edge_servers[copy] = None

    async def start_relays(self) -> None:
        for copy in range(PROCESS_COPIES):

            async def echo(ws: ServerConnection, name: str = f"live_relay.{copy + 1}") -> None:
                async for message in ws:
                    forwarded = ws.request.headers.get("X-Forwarded-For") if ws.request else None
                    await ws.send(json.dumps({"relay": name, "echo": message, "xff": forwarded}))

            port = self.layout.process_port("live_relay", copy)
            self.relays.append(await serve(echo, HOST, port))

    async def close(self) -> None:
        for copy, server in enumerate(self._edge_servers):
            if server is not None:
                await self.stop_edge(copy)
        for relay in self.relays:
            relay.close()
            await relay.wait_closed()


@pytest.fixture
async def front_door(tmp_path: Path) -> AsyncIterator[FrontDoor]:
    if nginx_bin() is None:
        pytest.fail("nginx not found: install Debian's nginx (./dev test does)")
    layout = _free_layout()
    paths = StackPaths(root=tmp_path / "cluster")
    paths.ensure_base()
    service = NginxService(Settings(), paths, StackState(paths.state_file), layout)
    door = FrontDoor(layout, service)
    for copy in range(PROCESS_COPIES):
        await door.start_edge(copy)
    await door.start_relays()
    reporter = Reporter()
    await service.up(reporter)
    try:
        yield door
    finally:
        await service.down(reporter)
        await door.close()
        assert service.running_pid() is None


def test_the_deploy_file_names_the_compose_services_on_their_default_ports() -> None:
    defaults = Settings.model_construct()
    servers = re.findall(r"^\s*server (\S+?)(?: |;)", DEPLOY_CONF.read_text(), re.M)
    assert servers == [f"edge:{defaults.edge_port}", f"live_relay:{defaults.live_port}"]


def test_the_rendered_site_has_every_copy_and_the_layout_listener() -> None:
    layout = ClusterLayout(40000)
    site = render_site(layout)
    servers = re.findall(r"^\s*server (\S+) max_fails=3 fail_timeout=5s;$", site, re.M)
    expected = [f"{HOST}:{layout.process_port(p, c)}" for p in ("edge", "live_relay") for c in range(2)]
    assert servers == expected
    assert re.findall(r"^\s*listen (\S+);$", site, re.M) == [f"{HOST}:{layout.nginx_port}"]


def test_a_post_is_never_passed_to_a_second_edge_by_configuration() -> None:
    site = DEPLOY_CONF.read_text()
    directives = re.findall(r"^\s*proxy_next_upstream (.+);$", site, re.M)
    assert directives == ["error timeout"], directives


async def test_nginx_accepts_the_rendered_config(front_door: FrontDoor) -> None:
    output = await front_door.service.check_config()
    assert "syntax is ok" in output, output
    assert "test is successful" in output, output


async def test_requests_reach_both_edges_with_the_client_address_forwarded(front_door: FrontDoor) -> None:
    async with httpx.AsyncClient(base_url=front_door.url, timeout=5.0) as client:
        answers = [(await client.get("/v1/items")).json() for _ in range(20)]
    assert Counter(a["edge"] for a in answers) == {"edge.1": 10, "edge.2": 10}
    assert {a["xff"] for a in answers} == {HOST}
    async with httpx.AsyncClient(base_url=front_door.url, timeout=5.0) as client:
        spoofed = (await client.get("/v1/items", headers={"X-Forwarded-For": "203.0.113.9"})).json()
    # The client's header is kept, nginx's peer appended last: the edge takes the right-most untrusted hop.
    assert spoofed["xff"] == f"203.0.113.9, {HOST}"


async def test_metrics_are_not_served_through_the_front_door(front_door: FrontDoor) -> None:
    async with httpx.AsyncClient(base_url=front_door.url, timeout=5.0) as client:
        assert (await client.get("/metrics")).status_code == 404
    assert all(path != "/metrics" for edge in front_door.edges for _, path, _ in edge.seen)


async def test_a_dead_edge_is_routed_around_for_reads_and_commands(front_door: FrontDoor) -> None:
    await front_door.stop_edge(0)
    async with httpx.AsyncClient(base_url=front_door.url, timeout=5.0) as client:
        for _ in range(10):
            read = await client.get("/v1/items")
            command = await client.post("/v1/items/SKU-1/stock/receive", json={"quantity": 1})
            assert read.status_code == command.status_code == 200
            assert read.json()["edge"] == command.json()["edge"] == "edge.2"


async def test_a_post_that_reached_an_edge_is_not_sent_again(front_door: FrontDoor) -> None:
    front_door.edges[0].drop = True
    async with httpx.AsyncClient(base_url=front_door.url, timeout=5.0) as client:
        answers = [await client.post("/v1/items/SKU-1/stock/receive", json={"quantity": 1}) for _ in range(4)]
    dropped = sum(1 for a in answers if a.status_code == 502)
    assert dropped >= 1, [a.status_code for a in answers]
    posts = [len([s for s in edge.seen if s[0] == "POST"]) for edge in front_door.edges]
    # Every POST reached exactly one edge: the ones edge.1 swallowed were answered 502, not retried.
    assert sum(posts) == len(answers), posts
    assert posts[0] == dropped


async def test_a_get_that_failed_on_one_edge_is_answered_by_the_other(front_door: FrontDoor) -> None:
    front_door.edges[0].drop = True
    async with httpx.AsyncClient(base_url=front_door.url, timeout=5.0) as client:
        answers = [await client.get("/v1/items") for _ in range(4)]
    assert [a.status_code for a in answers] == [200] * 4
    assert {a.json()["edge"] for a in answers} == {"edge.2"}


async def test_websockets_are_upgraded_through_to_both_relays(front_door: FrontDoor) -> None:
    url = f"ws://{HOST}:{front_door.layout.nginx_port}/v1/live"
    seen = set()
    for n in range(4):
        async with websockets.connect(url, open_timeout=5) as ws:
            await ws.send(f"hello {n}")
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert frame["echo"] == f"hello {n}"
        assert frame["xff"] == HOST
        seen.add(frame["relay"])
    assert seen == {"live_relay.1", "live_relay.2"}
