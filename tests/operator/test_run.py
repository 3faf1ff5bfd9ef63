"""`invmon run` as an operator runs it: the whole Procfile under one supervisor, stopped by a signal as
systemd or a container runtime stops it, and its kept logs followed with `invmon logs --command-id`."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from infra.settings import Settings
from tests.e2e.conftest import SHARED_CLIENT_LIMITS
from tests.e2e.support import new_sku, user_token
from tests.processes import ROOT

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

PORTS = ("EDGE", "STOCK_WORKER", "OUTBOX_RELAY", "PRICE_WORKER", "NOTIFIER", "LIVE")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(probe: object, what: str, within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    while not probe():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)  # poll interval while waiting for a condition


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


class Run:
    def __init__(self, tmp: Path) -> None:
        self.ports = {name: _free_port() for name in PORTS}
        self.stack_dir = tmp / "stack"
        self.output = tmp / "run.out"
        self.env = {
            **os.environ,
            **SHARED_CLIENT_LIMITS,
            **{f"INVMON_{name}_PORT": str(port) for name, port in self.ports.items()},
            # Only the run's own log files live here; the services stay those of the test stack.
            "INVMON_STACK_DIR": str(self.stack_dir),
        }
        self.env.pop("INVMON_LOG_JSON", None)
        invmon = Path(sys.executable).parent / "invmon"
        # A session of its own, as a service manager gives it: the signal reaches `invmon run` alone.
        self.popen = subprocess.Popen(
            [str(invmon), "run", "--procfile", str(ROOT / "Procfile")],
            cwd=ROOT,
            env=self.env,
            stdout=self.output.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        for name, port in self.ports.items():
            _wait(lambda p=port: _ready(p) or self.popen.poll() is not None, f"{name} ready")
            assert self.popen.poll() is None, self.output.read_text()[-3000:]

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.popen.pid).children(recursive=True)

    def invmon(self, *args: str) -> str:
        result = subprocess.run(
            [str(Path(sys.executable).parent / "invmon"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        return result.stdout.decode()


def _alive(processes: list[psutil.Process], sessions: set[int]) -> list[str]:
    """Processes still running: the ones seen before, and anything in their sessions (grandchildren that
    were reparented before we looked)."""
    left = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {p.cmdline()}")
        except psutil.NoSuchProcess:
            pass
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if os.getsid(p.pid) in sessions and p.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {p.info['cmdline']} (session)")
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return left


@pytest.fixture
def run(stack: Settings, tmp_path: Path) -> Iterator[Run]:
    started = Run(tmp_path)
    try:
        yield started
    finally:
        # Whatever a failing test left behind: stop it here, not in the next test's stack.
        if started.popen.poll() is None:
            for p in started.descendants():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
            started.popen.kill()
            started.popen.wait(10)


def _stop_leaves_nothing(run: Run, sig: int) -> None:
    run.wait_ready()
    seen = run.descendants()
    sessions = {os.getsid(p.pid) for p in seen} - {os.getsid(run.popen.pid)}
    assert len(seen) >= len(PORTS)
    run.popen.send_signal(sig)
    returncode = run.popen.wait(60)
    assert returncode == 0, run.output.read_text()[-3000:]
    assert _alive(seen, sessions) == []


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"]
)
def test_a_stop_signal_stops_every_process_and_leaves_nothing(run: Run, sig: int) -> None:
    _stop_leaves_nothing(run, sig)


def _lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_logs_follow_one_command_through_every_process(run: Run) -> None:
    run.wait_ready()
    token = user_token(run.ports["EDGE"], "run-logs-admin", "admin", "run-logs-admin-password-0123")
    sku = new_sku()
    edge = httpx.Client(
        base_url=f"http://127.0.0.1:{run.ports['EDGE']}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
    )
    # A webhook nobody listens on: the notifier's failed attempt is still a line of the command's.
    subscription = {"kind": "webhook", "url": f"http://127.0.0.1:{_free_port()}/hook"}
    response = edge.post(
        "/v1/notifications/subscriptions",
        json={"name": "followed", "event_types": ["item_registered"], "skus": [sku], "channel": subscription},
    )
    assert response.status_code == 201, response.text
    response = edge.post("/v1/items", json={"sku": sku, "name": "Followed", "initial_quantity": 3})
    edge.close()
    assert response.status_code == 202, response.text
    command_id = response.json()["command_id"]

    def followed() -> list[dict[str, object]]:
        return _lines(run.invmon("logs", "--command-id", command_id, "--json"))

    def sources() -> set[object]:
        return {line.get("process") for line in followed()}

    every = {"edge", "stock-worker", "outbox-relay", "notifier"}
    _wait(lambda: every <= sources(), f"lines of {command_id} from {every}")
    lines = followed()
    assert all(line["command_id"] == command_id for line in lines), lines
    by_process = {str(line["process"]): line for line in lines}
    assert by_process["edge"]["event"] == "http_request"
    recorded = by_process["stock-worker"]
    assert (recorded["event"], recorded["sku"]) == ("event_recorded", sku)
    published = by_process["outbox-relay"]
    assert (published["event"], published["event_id"]) == ("event_published", recorded["event_id"])
    attempted = by_process["notifier"]
    assert (attempted["event"], attempted["event_id"]) == ("delivery_attempt", recorded["event_id"])
    # The files hold JSON; the terminal (no TTY here) got the same JSON lines, each with its process.
    kept = _lines((run.stack_dir / "logs" / "processes" / "stock_worker.log").read_text())
    assert any(line.get("command_id") == command_id for line in kept)
    assert any(line.get("command_id") == command_id for line in _lines(run.output.read_text()))
    _stop_leaves_nothing(run, signal.SIGTERM)
