"""Fixtures of the fault drills: the load's length (--drill short, --drill-full long) and the pipelines
the load is sent to (a single node here; the replicated stack in tests/drills/cluster.py)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from infra.settings import Settings
from invmon.stack import manager
from tests.drills import cluster
from tests.drills.harness import Target
from tests.processes import Process, running

# The drills' shared assertions live outside test modules: pytest still shows what they compared.
pytest.register_assert_rewrite("tests.drills.checks")

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


@pytest.fixture(scope="session")
def cluster_settings(settings: Settings) -> Iterator[Settings]:
    """The settings of the replicated stack, brought up (`invmon stack up --cluster` starts only what is
    missing) and, if this fixture started any of it, stopped at the end."""
    lay = cluster.layout()
    started = manager.up(settings, Console(file=io.StringIO()), cluster=True)
    down = cluster.cluster_down_members(lay)
    if down:
        pytest.fail(f"replicated stack members not listening after `stack up --cluster`: {down}")
    yield cluster.settings_of(settings, lay)
    if started:
        manager.down(settings, console=Console(file=io.StringIO()), cluster=True)


@pytest.fixture(scope="module")
def drill_pipeline(
    cluster_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[cluster.Pipeline]:
    """2 copies of the edge, stock worker, outbox relay and live relay on the layout's ports."""
    log_dir: Path = tmp_path_factory.mktemp("drill-cluster-logs")
    with cluster.pipeline(cluster_settings, cluster.layout(), log_dir, HIGH_LIMITS) as running:
        yield running


@pytest.fixture
def drill_target(drill_pipeline: cluster.Pipeline, cluster_settings: Settings) -> Target:
    """The load's target: nginx in front of the edges (without nginx yet, edge copy 0 directly)."""
    lay = drill_pipeline.lay
    front = lay.nginx_port if cluster.listening_pid(lay.nginx_port) else lay.process_port("edge", 0)
    return Target(http_port=front, settings=cluster_settings)


@pytest.fixture
def live_url(drill_pipeline: cluster.Pipeline) -> str:
    lay = drill_pipeline.lay
    if cluster.listening_pid(lay.nginx_port):
        return f"ws://127.0.0.1:{lay.nginx_port}/v1/live"
    return f"ws://127.0.0.1:{lay.process_port('live_relay', 0)}/v1/live"


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
