from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
    }
    with running(ports, log_dir) as processes:
        yield processes
