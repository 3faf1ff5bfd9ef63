"""The replicated stack for the cluster tests (only collected with --run-cluster, see tests/conftest.py).

- `cluster`: `invmon stack up --cluster` (in INVMON_CLUSTER_STACK_DIR on INVMON_CLUSTER_BASE_PORT) for
  each module that uses it, stopped at the end of the session.
- `redis_cluster`: Redis primary, replica and three Sentinels alone, in a stack dir under tmp, at the layout
  of INVMON_CLUSTER_BASE_PORT shifted by 500 (so that the running cluster does not collide with them).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from infra.settings import Settings
from invmon.stack import manager
from invmon.stack.cluster import layout_of, member_settings
from invmon.stack.cluster_layout import ClusterLayout
from invmon.stack.paths import StackPaths
from invmon.stack.redis_cluster import redis_cluster_services
from invmon.stack.report import Reporter
from invmon.stack.service import Service
from invmon.stack.state import StackState

LAYOUT_SHIFT = 500


@dataclass
class RedisCluster:
    settings: Settings  # INVMON_REDIS_URL / _SENTINELS of this cluster
    layout: ClusterLayout
    paths: StackPaths
    reporter: Reporter

    def services(self) -> list[Service]:
        """Fresh service objects over the same dir and state, as a second `invmon stack up` would build."""
        state = StackState(self.paths.state_file)
        return redis_cluster_services(self.settings, self.paths, state, self.layout)

    def service(self, name: str) -> Service:
        return next(s for s in self.services() if s.name == name)

    async def up(self) -> None:
        for service in self.services():
            await service.up(self.reporter)

    async def down(self) -> None:
        for service in reversed(self.services()):
            await service.down(self.reporter)


def cluster_layout() -> ClusterLayout:
    return ClusterLayout(Settings().cluster_base_port + LAYOUT_SHIFT)


@pytest.fixture
async def redis_cluster(tmp_path: Path) -> AsyncIterator[RedisCluster]:
    layout = cluster_layout()
    settings = Settings(
        _env_file=None,
        stack_dir=tmp_path / "cluster",
        stack_profile="test",
        redis_url=f"redis://127.0.0.1:{layout.redis_primary_port}/0",
        redis_sentinels=layout.sentinels,
    )
    paths = StackPaths(root=tmp_path / "cluster")
    paths.ensure_base()
    cluster = RedisCluster(settings, layout, paths, Reporter(Console(quiet=True)))
    try:
        await cluster.up()
        yield cluster
    finally:
        await cluster.down()


@pytest.fixture(scope="session")
def _cluster_session(settings: Settings) -> Iterator[None]:
    yield
    manager.down(settings, console=Console(file=io.StringIO()), cluster=True)


@pytest.fixture(scope="module")
def cluster(settings: Settings, _cluster_session: None) -> Settings:
    """The settings of a process of the running cluster (its Kafka bootstrap, primary, Redis). Brought up
    per module: `stack up --cluster` starts only what is missing (a test may have stopped it: `down`)."""
    manager.up(settings, Console(file=io.StringIO()), cluster=True)
    return member_settings(settings, layout_of(settings))
