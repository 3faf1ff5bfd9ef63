"""`invmon stack up --with-prometheus` against the running test stack: Prometheus starts on its own port
with the deploy rules loaded and the six jobs as targets, a second `up` does nothing, `status` lists it while
it runs, and `invmon stack down prometheus` stops exactly it (the rest of the stack keeps running)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
import pytest
from rich.console import Console

from infra.settings import Settings
from invmon.stack.manager import down, status, status_async, up, up_async
from invmon.stack.report import Reporter
from tests.e2e.live_support import free_port
from tests.integration.helpers import wait_until

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]
JOBS = {"edge", "stock_worker", "price_worker", "outbox_relay", "notifier", "live_relay"}


def _quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.fixture
def with_prometheus(stack: Settings) -> Iterator[Settings]:
    settings = stack.model_copy(update={"prometheus_port": free_port()})
    assert up(settings, _quiet(), with_prometheus=True) is True
    try:
        yield settings
    finally:
        down(settings, console=_quiet(), only="prometheus")


async def test_prometheus_runs_the_deploy_rules_against_every_process(with_prometheus: Settings) -> None:
    base = f"http://127.0.0.1:{with_prometheus.prometheus_port}"
    rows = {row.name: row for row in await status_async(with_prometheus)}
    assert rows["prometheus"].running, rows["prometheus"]
    assert rows["prometheus"].ready, rows["prometheus"]
    assert rows["prometheus"].port == with_prometheus.prometheus_port

    async with httpx.AsyncClient(base_url=base, timeout=5.0) as client:

        async def targets() -> list[dict[str, Any]]:
            response = await client.get("/api/v1/targets")
            found: list[dict[str, Any]] = response.json()["data"]["activeTargets"]
            return found

        # The scrape manager picks the targets up a moment after /-/ready.
        active = await wait_until(
            targets, lambda found: {t["labels"]["job"] for t in found} == JOBS, within=30, what="six targets"
        )
        groups = (await client.get("/api/v1/rules")).json()["data"]["groups"]
    assert {t["scrapeUrl"] for t in active if t["labels"]["job"] == "stock_worker"} == {
        f"http://127.0.0.1:{with_prometheus.stock_worker_port}/metrics"
    }
    alerts = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"InvmonConsumerLagGrowing", "InvmonProcessDown", "InvmonOutboxStale"} <= alerts

    output = io.StringIO()
    assert await up_async(with_prometheus, Reporter(Console(file=output)), with_prometheus=True) is False
    assert "nothing to do" in output.getvalue()


def test_down_prometheus_stops_only_prometheus(stack: Settings) -> None:
    settings = stack.model_copy(update={"prometheus_port": free_port()})
    up(settings, _quiet(), with_prometheus=True)
    pid = {row.name: row.pid for row in status(settings)}["prometheus"]
    assert pid is not None

    down(settings, console=_quiet(), only="prometheus")

    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    rows = {row.name: row for row in status(settings)}
    assert set(rows) == {"kafka", "postgres", "redis"}
    assert all(row.running and row.ready for row in rows.values())
