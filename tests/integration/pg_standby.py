"""The stack's own PostgreSQL primary and hot standby (invmon.stack.pg_cluster, what `invmon stack up
--cluster` runs) in a stack dir under tmp, for the read-replica tests: the same pg_basebackup, slot and
replication settings the cluster uses, at the cluster layout shifted by 700 so a running cluster of the
same machine does not collide with them."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from rich.console import Console

from infra.settings import Settings
from invmon.stack.cluster_layout import ClusterLayout
from invmon.stack.paths import StackPaths
from invmon.stack.pg_cluster import PrimaryService, StandbyService, pg_services
from invmon.stack.report import Reporter
from invmon.stack.state import StackState

LAYOUT_SHIFT = 700
PASSWORD = "invmon-standby-test"


@dataclass
class Pair:
    primary: PrimaryService
    standby: StandbyService
    layout: ClusterLayout
    reporter: Reporter

    @property
    def primary_url(self) -> str:
        return self.layout.database_url(self.layout.postgres_primary_port, PASSWORD)

    @property
    def standby_url(self) -> str:
        return self.layout.database_url(self.layout.postgres_standby_port, PASSWORD)

    async def stop_standby(self) -> None:
        await self.standby.down(self.reporter)

    async def start_standby(self) -> None:
        await self.standby.up(self.reporter)

    async def standby_superuser(self) -> asyncpg.Connection:
        """ALTER SYSTEM needs the superuser, which the pipeline's role is not."""
        return await self.standby._superuser_connect()


@contextmanager
def primary_and_standby() -> Iterator[Pair]:
    # Not pytest's tmp_path: its folders are private to root, and PostgreSQL runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="invmon-standby-"))
    root.chmod(0o755)
    layout = ClusterLayout(Settings().cluster_base_port + LAYOUT_SHIFT)
    settings = Settings(
        _env_file=None,
        stack_dir=root,
        stack_profile="test",
        database_url=layout.database_url(layout.postgres_primary_port, PASSWORD),
    )
    paths = StackPaths(root=root)
    paths.ensure_base()
    primary, standby = pg_services(settings, paths, StackState(paths.state_file), layout)
    pair = Pair(primary, standby, layout, Reporter(Console(quiet=True)))
    try:
        asyncio.run(primary.up(pair.reporter))
        asyncio.run(standby.up(pair.reporter))
        yield pair
    finally:
        asyncio.run(standby.down(pair.reporter))
        asyncio.run(primary.down(pair.reporter))
        shutil.rmtree(root, ignore_errors=True)
