"""Where /metrics is served: on the API port by default, on a port of its own when one is set (the API
and WebSocket ports then answer 404 for it), nowhere when turned off. Real edge and relay processes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from infra.settings import Settings
from tests.e2e.live_support import free_port
from tests.processes import Process, start, wait_ready

pytestmark = [pytest.mark.stack, pytest.mark.timeout(180)]

PORT_SETTING = {"edge": "INVMON_EDGE_PORT", "live_relay": "INVMON_LIVE_PORT"}
METRICS_PORT_SETTING = {"edge": "INVMON_EDGE_METRICS_PORT", "live_relay": "INVMON_LIVE_METRICS_PORT"}
A_METRIC = {"edge": "invmon_edge_requests_total", "live_relay": "python_gc_objects_collected_total"}


@contextmanager
def started(name: str, env: dict[str, str], tmp_path: Path) -> Iterator[Process]:
    port = free_port()
    process = start(name, port, tmp_path, env={PORT_SETTING[name]: str(port), **env})
    try:
        wait_ready(process)
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("name", ["edge", "live_relay"])
def test_metrics_on_a_port_of_their_own(name: str, stack: Settings, tmp_path: Path) -> None:
    metrics_port = free_port()
    env = {METRICS_PORT_SETTING[name]: str(metrics_port), "INVMON_METRICS_HOST": "127.0.0.1"}
    with started(name, env, tmp_path) as process:
        assert httpx.get(f"http://127.0.0.1:{process.port}/metrics").status_code == 404
        assert httpx.get(f"http://127.0.0.1:{process.port}/health/live").status_code == 200
        scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scrape.status_code == 200
        assert A_METRIC[name] in scrape.text


@pytest.mark.parametrize("name", ["edge", "live_relay"])
def test_metrics_turned_off(name: str, stack: Settings, tmp_path: Path) -> None:
    unused = free_port()
    env = {"INVMON_METRICS_ENABLED": "false", METRICS_PORT_SETTING[name]: str(unused)}
    with started(name, env, tmp_path) as process:
        assert httpx.get(f"http://127.0.0.1:{process.port}/metrics").status_code == 404
        assert httpx.get(f"http://127.0.0.1:{process.port}/health/ready").status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{unused}/metrics")


@pytest.mark.parametrize("name", ["edge", "live_relay"])
def test_metrics_on_the_main_port_by_default(name: str, stack: Settings, tmp_path: Path) -> None:
    with started(name, {}, tmp_path) as process:
        scrape = httpx.get(f"http://127.0.0.1:{process.port}/metrics")
        assert scrape.status_code == 200
        assert A_METRIC[name] in scrape.text
