"""Fixtures of the fault drills: the load's length (--drill short, --drill-full long) and the pipelines
the load is sent to (a single node here; the replicated stack in tests/drills/cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.settings import Settings
from tests.drills.harness import Target
from tests.processes import Process, running

SHORT_S = 20.0
FULL_S = 120.0
# The load comes from one user and one address: the edges' limits must not be what the drill measures.
HIGH_LIMITS = {
    "INVMON_RATE_LIMIT_IP": "100000000/minute",
    "INVMON_RATE_LIMIT_PRINCIPAL": "100000000/minute",
    "INVMON_RATE_LIMIT_LOGIN_ACCOUNT": "1000000/minute",
    "INVMON_LOG_LEVEL": "WARNING",
}


@pytest.fixture(scope="session")
def drill_duration(pytestconfig: pytest.Config) -> float:
    """Seconds of load per drill."""
    return FULL_S if pytestconfig.getoption("--drill-full") else SHORT_S


@pytest.fixture(scope="package")
def single_node(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Process]]:
    """The single-node pipeline the harness is proven against: edge, stock worker, outbox and live relay."""
    log_dir: Path = tmp_path_factory.mktemp("drill-single-node")
    ports = {
        "edge": stack.edge_port,
        "stock_worker": stack.stock_worker_port,
        "outbox_relay": stack.outbox_relay_port,
        "live_relay": stack.live_port,
    }
    with running(ports, log_dir, HIGH_LIMITS) as processes:
        yield processes


@pytest.fixture
def single_node_target(single_node: dict[str, Process], stack: Settings) -> Target:
    return Target(http_port=single_node["edge"].port, settings=stack)
