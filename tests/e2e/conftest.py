from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from infra.settings import Settings
from tests.processes import Process, running


@pytest.fixture(scope="package")
def pipeline(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Process]]:
    """The edge, the stock worker and the outbox relay as real processes, started from the Procfile."""
    log_dir: Path = tmp_path_factory.mktemp("pipeline-logs")
    ports = {
        "edge": stack.edge_port,
        "stock_worker": stack.stock_worker_port,
        "outbox_relay": stack.outbox_relay_port,
        "price_worker": stack.price_worker_port,
    }
    with running(ports, log_dir) as processes:
        yield processes


@pytest.fixture
async def edge(pipeline: dict[str, Process], stack: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.edge_port}", timeout=10.0) as client:
        yield client
