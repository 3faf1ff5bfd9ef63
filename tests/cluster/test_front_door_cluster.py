"""`invmon run --cluster` behind the cluster's nginx, from the outside: 12 processes start, HTTP through the
front door reaches both edges, a WebSocket through it subscribes and receives, a SIGKILLed edge is routed
around while the supervisor keeps its twin, and SIGTERM stops every copy and leaves nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import websockets
from rich.console import Console

from infra.settings import Settings
from invmon.stack import manager
from invmon.stack.cluster import layout_of
from invmon.stack.cluster_layout import HOST, PORT_SETTINGS, PROCESS_COPIES, ClusterLayout
from tests.processes import ROOT

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(300)]

PASSWORD = "front-door-password-0123"
COPIES = [(process, copy) for process in PORT_SETTINGS for copy in range(PROCESS_COPIES)]


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://{HOST}:{port}/health/ready", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(probe: object, what: str, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while not probe():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)  # poll interval while waiting for a condition


class ClusterRun:
    """`invmon run --cluster` in a session of its own, as a service manager starts it."""

    def __init__(self, settings: Settings, cluster: Settings, tmp: Path) -> None:
        self.layout: ClusterLayout = layout_of(settings)
        self.cluster_dir = ROOT / settings.cluster_stack_dir
        self.output = tmp / "run-cluster.out"
        self.env = {**os.environ, "INVMON_DATABASE_URL": cluster.database_url}
        self.env.pop("INVMON_LOG_JSON", None)
        self.invmon = str(Path(sys.executable).parent / "invmon")
        self.popen = subprocess.Popen(
            [self.invmon, "run", "--cluster", "--procfile", str(ROOT / "Procfile")],
            cwd=ROOT,
            env=self.env,
            stdout=self.output.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        for process, copy in COPIES:
            port = self.layout.process_port(process, copy)
            _wait(lambda p=port: _ready(p) or self.popen.poll() is not None, f"{process}.{copy + 1} ready")
            assert self.popen.poll() is None, self.text()[-3000:]

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.popen.pid).children(recursive=True)

    def listener(self, process: str, copy: int) -> int:
        port = self.layout.process_port(process, copy)
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
        raise AssertionError(f"nothing listens on {port}")

    @property
    def front(self) -> str:
        return f"http://{HOST}:{self.layout.nginx_port}"

    def token(self, role: str) -> str:
        name = f"front-door-{role}-{uuid.uuid4().hex[:6]}"
        subprocess.run(
            [self.invmon, "user", "add", name, "--role", role, "--password-stdin"],
            input=PASSWORD + "\n",
            text=True,
            env=self.env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=60,
        )
        answer = httpx.post(f"{self.front}/v1/auth/token", data={"username": name, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


@pytest.fixture(scope="module")
def run(
    settings: Settings, cluster: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterRun]:
    # The session's cluster may have had a node killed or been taken down by an earlier test: up again (a
    # no-op when whole).
    manager.up(settings, Console(file=io.StringIO()), cluster=True)
    started = ClusterRun(settings, cluster, tmp_path_factory.mktemp("front-door"))
    try:
        started.wait_ready()
        yield started
    finally:
        if started.popen.poll() is None:  # a test failed before the SIGTERM test: leave nothing behind
            for child in started.descendants():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
            started.popen.kill()
            started.popen.wait(10)


def _requests_on(port: int, route: str) -> float:
    text = httpx.get(f"http://{HOST}:{port}/metrics", timeout=5.0).text
    pattern = rf'^invmon_edge_requests_total\{{[^}}]*route="{re.escape(route)}"[^}}]*\}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.M))


def test_every_process_runs_twice_under_its_copy_name(run: ClusterRun) -> None:
    started = re.findall(r"^run\s*\| (\S+) started", run.text(), re.M)
    assert sorted(started) == sorted(f"{p}.{c + 1}" for p, c in COPIES)
    logs = run.cluster_dir / "logs" / "processes"
    assert all((logs / f"{name}.log").exists() for name in started)


def test_requests_through_nginx_reach_both_edges(run: ClusterRun) -> None:
    token = run.token("viewer")
    edges = [run.layout.process_port("edge", copy) for copy in range(PROCESS_COPIES)]
    before = [_requests_on(port, "/v1/items") for port in edges]
    with httpx.Client(base_url=run.front, headers={"Authorization": f"Bearer {token}"}) as client:
        for _ in range(40):
            assert client.get("/v1/items").status_code == 200
    served = [_requests_on(port, "/v1/items") - b for port, b in zip(edges, before, strict=True)]
    assert sum(served) == 40, served
    assert min(served) >= 10, f"nginx did not balance: {served}"


async def test_a_websocket_through_nginx_subscribes_and_receives(run: ClusterRun) -> None:
    token = await asyncio.to_thread(run.token, "operator")
    sku = f"FRONT-{uuid.uuid4().hex[:8].upper()}"
    url = f"ws://{HOST}:{run.layout.nginx_port}/v1/live"
    async with websockets.connect(url, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "connect", "token": token}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connected"
        await ws.send(json.dumps({"type": "subscribe", "channel": "inventory", "filter": {"skus": [sku]}}))

        async def frame(kind: str) -> dict[str, object]:
            while True:
                received: dict[str, object] = json.loads(await ws.recv())
                if received["type"] == kind:
                    return received

        await asyncio.wait_for(frame("subscribed"), 10)
        async with httpx.AsyncClient(
            base_url=run.front, headers={"Authorization": f"Bearer {token}"}
        ) as edge:
            answer = await edge.post(
                "/v1/items", json={"sku": sku, "name": "Front door", "initial_quantity": 3}
            )
            assert answer.status_code == 202, answer.text
        pub = await asyncio.wait_for(frame("pub"), 30)
    event = pub["event"]
    assert isinstance(event, dict)
    assert event["sku"] == sku


def _metric_sum(port: int, name: str) -> float:
    text = httpx.get(f"http://{HOST}:{port}/metrics", timeout=5.0).text
    return sum(float(value) for value in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def test_the_copies_share_the_work_and_one_outbox_relay_leads(run: ClusterRun) -> None:
    relays = [run.layout.process_port("outbox_relay", copy) for copy in range(PROCESS_COPIES)]
    _wait(
        lambda: sum(_metric_sum(port, "invmon_outbox_relay_leader") for port in relays) == 1,
        "one leading outbox relay",
        within=30,
    )
    workers = [run.layout.process_port("stock_worker", copy) for copy in range(PROCESS_COPIES)]
    before = [_metric_sum(port, "invmon_commands_total") for port in workers]
    token = run.token("operator")
    with httpx.Client(base_url=run.front, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        for n in range(24):
            sku = f"FRONT-W{n}-{uuid.uuid4().hex[:6]}"
            assert client.post("/v1/items", json={"sku": sku, "name": "W"}).status_code == 202

    def handled() -> list[float]:
        return [
            _metric_sum(port, "invmon_commands_total") - b for port, b in zip(workers, before, strict=True)
        ]

    _wait(lambda: sum(handled()) >= 24, "24 commands handled by the stock workers", within=60)
    # 24 SKUs over 6 partitions split between two group members: each copy handled some.
    assert min(handled()) > 0, handled()


def test_a_killed_edge_is_routed_around_and_its_twin_carries_on(run: ClusterRun) -> None:
    token = run.token("operator")
    victim = run.listener("edge", 0)
    os.killpg(victim, signal.SIGKILL)
    _wait(lambda: "edge.1 exited" in run.text(), "the supervisor to see edge.1 end", within=30)
    failures = []
    with httpx.Client(base_url=run.front, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        for n in range(30):
            read = client.get("/v1/items")
            command = client.post(
                "/v1/items", json={"sku": f"FRONT-K{n}-{uuid.uuid4().hex[:6]}", "name": "K"}
            )
            failures += [r.status_code for r in (read, command) if r.status_code not in (200, 202)]
    assert failures == []
    assert run.popen.poll() is None, run.text()[-3000:]
    assert "edge.1 exited (rc=-9): edge.2 carries on" in run.text()


def test_sigterm_stops_every_copy_and_leaves_nothing(run: ClusterRun) -> None:
    seen = run.descendants()
    sessions = {os.getsid(p.pid) for p in seen} - {os.getsid(run.popen.pid)}
    assert len(sessions) >= len(COPIES) - 1  # edge.1 was killed by the test before
    run.popen.send_signal(signal.SIGTERM)
    assert run.popen.wait(90) == 0, run.text()[-3000:]
    left = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            if os.getsid(p.pid) in sessions and p.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {p.info['cmdline']}")
    assert left == []
