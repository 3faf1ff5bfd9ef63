"""`invmon status` against the real stack, as an operator runs it: two processes up (the outbox relay and the
live relay, with one WebSocket client), the others down, and rows the screen must show. It must answer,
and show what is down, also when the database and Kafka are unreachable."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from infra.settings import Settings
from tests.e2e.live_support import connected, free_port, relay_process, token, url_of
from tests.integration.helpers import run_id
from tests.processes import ROOT, Process, start, wait_ready

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]

DOWN_PORTS = (
    "INVMON_EDGE_PORT",
    "INVMON_STOCK_WORKER_PORT",
    "INVMON_PRICE_WORKER_PORT",
    "INVMON_NOTIFIER_PORT",
)


def invmon_status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invmon.cli", "status"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "160", "NO_COLOR": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def row(output: str, first: str) -> str:
    """The screen line whose first cell is `first`."""
    for line in output.splitlines():
        if re.match(rf"\s*{re.escape(first)}\s", line):
            return line
    raise AssertionError(f"no line starting with {first!r} in:\n{output}")


@pytest.fixture
def outbox_relay(stack: Settings, tmp_path: Path) -> Iterator[Process]:
    port = free_port()
    process = start("outbox_relay", port, tmp_path, {"INVMON_OUTBOX_RELAY_PORT": str(port)})
    try:
        wait_ready(process)
        yield process
    finally:
        process.stop()


@pytest.fixture
async def failing_webhook(db: asyncpg.Connection) -> AsyncIterator[str]:
    """A disabled webhook subscription with a delivery that gave up, and a dead letter: rows to show."""
    name = f"status hook {run_id()}"
    sid = uuid.uuid4()
    topic = f"status-test-{run_id()}"
    await db.execute(
        """
        INSERT INTO notification_subscriptions (id, name, kind, url, secret, enabled)
        VALUES ($1, $2, 'webhook', 'https://hooks.example.com/status', 'whsec-test', false)
        """,
        sid,
        name,
    )
    await db.execute(
        """
        INSERT INTO notification_deliveries
            (event_id, subscription_id, event_type, sku, payload, status, attempts, last_error)
        VALUES ($1, $2, 'stock_changed', 'STATUS-1', '{}'::jsonb, 'failed', 7, 'HTTP 503 from status test')
        """,
        uuid.uuid4(),
        sid,
    )
    await db.execute(
        """
        INSERT INTO dead_letters (topic, partition, "offset", reason, at, by_reference)
        VALUES ($1, 0, 0, 'refused by PostgreSQL (22003): status test', clock_timestamp(), false)
        """,
        topic,
    )
    try:
        yield name
    finally:
        await db.execute("DELETE FROM dead_letters WHERE topic = $1", topic)
        await db.execute("DELETE FROM notification_deliveries WHERE subscription_id = $1", sid)
        await db.execute("DELETE FROM notification_subscriptions WHERE id = $1", sid)


async def test_status_shows_what_is_up_what_is_down_and_the_pipelines_state(
    stack: Settings, outbox_relay: Process, failing_webhook: str, tmp_path: Path
) -> None:
    env = {port: str(free_port()) for port in DOWN_PORTS}
    with relay_process(tmp_path) as live:
        async with connected(url_of(live), token(stack)):
            env |= {"INVMON_OUTBOX_RELAY_PORT": str(outbox_relay.port), "INVMON_LIVE_PORT": str(live.port)}
            result = invmon_status(env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ready" in row(out, "outbox_relay")
    assert "ready" in row(out, "live_relay")
    for process in ("edge", "stock_worker", "price_worker", "notifier"):
        assert "down" in row(out, process)
        assert "nothing listening" in row(out, process)
    assert "4 process(es) not ready" in out
    # Lag: our three groups, each on its topic's partitions.
    for group in (stack.stock_consumer_group, stack.price_consumer_group, stack.notifier_consumer_group):
        assert re.search(rf"{re.escape(group)}\s+{stack.kafka_partitions}\s+\d+", out), out
    assert re.search(r"unpublished events\s+\d+", out), out
    assert re.search(r"WebSocket clients\s+1\b", out), out
    assert re.search(r"refused\s+\d+", out), out
    hook = row(out, failing_webhook)
    assert "webhook" in hook
    assert "https://hooks.example.com/status" in hook
    assert "disabled" in hook


def test_status_answers_when_the_database_and_kafka_are_down(stack: Settings) -> None:
    closed = str(free_port())
    env = {
        "INVMON_DATABASE_URL": f"postgresql+asyncpg://invmon:invmon@127.0.0.1:{closed}/invmon",
        "INVMON_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed}",
        **{port: str(free_port()) for port in (*DOWN_PORTS, "INVMON_OUTBOX_RELAY_PORT", "INVMON_LIVE_PORT")},
    }
    result = invmon_status(env)
    assert result.returncode == 0, result.stderr
    assert "6 process(es) not ready" in result.stdout
    assert result.stdout.count("unavailable:") >= 3, result.stdout  # lag, outbox, dead letters (+ failing)
    assert "live relay down" in result.stdout


def test_watch_redraws_until_interrupted(stack: Settings) -> None:
    """In a terminal (a pty, as tmux gives), --watch draws again every --interval; Ctrl-C ends it cleanly."""
    env = {port: str(free_port()) for port in (*DOWN_PORTS, "INVMON_OUTBOX_RELAY_PORT", "INVMON_LIVE_PORT")}
    leader, follower = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "invmon.cli", "status", "--watch", "--interval", "0.5"],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "140", "LINES": "45", **env},
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while seen.count(b"inventory-monitor status") < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                seen += os.read(leader, 65536)
        assert seen.count(b"inventory-monitor status") >= 3, seen[-2000:]
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=20) == 0
    finally:
        if child.poll() is None:
            child.kill()
        os.close(leader)
