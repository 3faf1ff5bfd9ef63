"""The consumer-lag alert fires for real: the whole pipeline runs, `invmon stack up --with-prometheus` runs
Prometheus against it, the stock worker is stopped while commands keep arriving, and Prometheus's
/api/v1/alerts shows InvmonConsumerLagGrowing for the stock worker's group, pending and then firing.

Waiting 5 minutes for the real `for:` would make this the slowest test of the suite, so Prometheus loads a
copy of deploy/prometheus/rules/invmon.yml in which only that alert's `for: 5m` reads `for: 20s`; the test
checks that this one line is the whole difference."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.topics import STOCK_COMMANDS
from infra.settings import Settings
from invmon.stack.prometheus import DEPLOY
from tests.e2e.live_support import free_port
from tests.e2e.support import new_sku, user_token, wait_for_status
from tests.integration.helpers import wait_until
from tests.processes import Process, running

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(420)]

ALERT = "InvmonConsumerLagGrowing"
# Every request comes from 127.0.0.1 as one admin: the default per-IP limit would refuse the trickle.
LIMITS = {"INVMON_RATE_LIMIT_IP": "1000000/minute", "INVMON_RATE_LIMIT_PRINCIPAL": "1000000/minute"}
SHORT_FOR = "20s"


def short_rules(target: Path) -> Path:
    """deploy's rule file with the lag alert's `for:` shortened, and nothing else changed."""
    source = DEPLOY / "rules" / "invmon.yml"
    text = source.read_text()
    start = text.index(f"- alert: {ALERT}")
    end = text.index("- alert:", start + 1)
    block = re.sub(r"(\n\s+for: )5m\n", rf"\g<1>{SHORT_FOR}\n", text[start:end], count=1)
    changed = text[:start] + block + text[end:]
    diff = [
        line
        for line in difflib.unified_diff(text.splitlines(), changed.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert diff == ["-        for: 5m", f"+        for: {SHORT_FOR}"], diff
    target.mkdir(parents=True, exist_ok=True)
    (target / source.name).write_text(changed)
    return target


def invmon(*args: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "invmon.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def prometheus(stack: Settings, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        "INVMON_PROMETHEUS_PORT": str(port),
        "INVMON_PROMETHEUS_RULES_DIR": str(short_rules(tmp_path / "rules")),
    }
    invmon("stack", "up", "--with-prometheus", env=env)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        invmon("stack", "down", "prometheus", env=env)


@pytest.fixture
def pipeline(stack: Settings, tmp_path: Path) -> Iterator[dict[str, Process]]:
    ports = {
        "edge": stack.edge_port,
        "stock_worker": stack.stock_worker_port,
        "outbox_relay": stack.outbox_relay_port,
        "price_worker": stack.price_worker_port,
        "notifier": stack.notifier_port,
        "live_relay": stack.live_port,
    }
    with running(ports, tmp_path, LIMITS) as processes:
        yield processes


async def lag_alerts(prometheus: str, group: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        alerts = (await client.get(f"{prometheus}/api/v1/alerts")).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == ALERT and a["labels"].get("group") == group]


async def wait_for_state(prometheus: str, group: str, state: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = [a for a in await lag_alerts(prometheus, group) if a["state"] == state]
        if found:
            return found[0]
        await asyncio.sleep(1.0)  # poll interval while waiting for Prometheus's next evaluation
    async with httpx.AsyncClient(timeout=5.0) as client:
        series = await client.get(f"{prometheus}/api/v1/query", params={"query": "invmon_consumer_lag"})
    raise AssertionError(f"{ALERT} for {group} not {state} within {within:.0f}s; lag series: {series.text}")


async def test_stopped_stock_worker_fires_the_lag_alert(
    stack: Settings, pipeline: dict[str, Process], prometheus: str
) -> None:
    name = f"lag-{uuid.uuid4().hex[:8]}"
    token = await asyncio.to_thread(user_token, stack.edge_port, name, "admin", "lag-alert-password-0123")
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{stack.edge_port}",
        timeout=10.0,
        headers={"Authorization": f"Bearer {token}"},
    ) as edge:
        sku = new_sku()
        registered = await edge.post("/v1/items", json={"sku": sku, "name": "Lagging mug"})
        assert registered.status_code == 202, registered.text
        assert (await wait_for_status(edge, registered.json()["command_id"]))["status"] == "applied"
        group = stack.stock_consumer_group
        assert not [a for a in await lag_alerts(prometheus, group) if a["state"] == "firing"]

        pipeline["stock_worker"].stop()

        async def exported_lag() -> float:
            metrics = (await edge.get(f"http://127.0.0.1:{stack.outbox_relay_port}/metrics")).text
            pattern = rf'^invmon_consumer_lag{{[^}}]*group="{re.escape(group)}"[^}}]*}} (\S+)$'
            return sum(float(m) for m in re.findall(pattern, metrics, flags=re.MULTILINE))

        async def keep_sending() -> None:
            # The next command goes once the relay's gauge shows the last one as lag: the lag grows at
            # the gauge's own pace, however slow the box, never outrunning what Prometheus can see.
            sent = 0
            while True:
                response = await edge.post(f"/v1/items/{sku}/receipts", json={"quantity": 1})
                assert response.status_code == 202, response.text
                sent += 1
                await wait_until(exported_lag, lambda lag, n=sent: lag >= n, within=60, what=f"lag {sent}")

        sender = asyncio.create_task(keep_sending())
        try:
            pending = await wait_for_state(prometheus, group, "pending", within=120)
            firing = await wait_for_state(prometheus, group, "firing", within=90)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    assert pending["labels"]["topic"] == STOCK_COMMANDS.name
    assert firing["labels"]["severity"] == "critical"
    assert float(firing["value"]) > 0
