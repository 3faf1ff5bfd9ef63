"""The replicated stack (`invmon stack up --cluster`): 3 KRaft nodes, a PostgreSQL primary and hot standby,
and Redis (master, replica, 3 Sentinels), on the ports of ClusterLayout(INVMON_CLUSTER_BASE_PORT), all
state under INVMON_CLUSTER_STACK_DIR.

The members are the single stack's services with other ports and folders; what only a cluster needs (one
topic set at replication factor 3 once every node is up, the migrations on the primary, cluster.env for
`invmon run --cluster`) happens in `provision` after they are all up.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
from aiokafka.errors import KafkaError

from infra.settings import Settings
from invmon.stack import kafka_admin
from invmon.stack.cluster_layout import (
    ENV_FILE,
    KAFKA_NODES,
    MIN_INSYNC_REPLICAS,
    REPLICATION_FACTOR,
    ClusterLayout,
)
from invmon.stack.kafka import KafkaNode, KafkaService, ensure_topics
from invmon.stack.kafka_quorum import Quorum, QuorumError, describe_quorum
from invmon.stack.nginx import NginxService
from invmon.stack.paths import StackPaths
from invmon.stack.pg_cluster import PrimaryService, pg_services
from invmon.stack.postgres import Target
from invmon.stack.procs import wait_until
from invmon.stack.redis_cluster import redis_cluster_services
from invmon.stack.report import Reporter
from invmon.stack.service import Service
from invmon.stack.state import StackState

# Three JVMs share the box with everything else: a quarter of the single node's default heap each is
# plenty for the drills' load (RSS measured after up: see docs/deployment.md).
KAFKA_HEAP = "256m"
VIEW_TTL_S = 1.0


def layout_of(settings: Settings) -> ClusterLayout:
    return ClusterLayout(settings.cluster_base_port)


def cluster_paths(settings: Settings) -> StackPaths:
    return StackPaths(root=(Path.cwd() / settings.cluster_stack_dir).resolve())


def member_settings(settings: Settings, layout: ClusterLayout) -> Settings:
    """The settings a process of the cluster sees: the layout's addresses, rf 3 and min ISR 2."""
    password = Target.from_url(settings.database_url).password
    return settings.model_copy(
        update={
            "kafka_bootstrap": layout.kafka_bootstrap,
            "kafka_replication_factor": REPLICATION_FACTOR,
            "kafka_min_insync_replicas": MIN_INSYNC_REPLICAS,
            "database_url": layout.database_url(layout.postgres_primary_port, password),
            "redis_url": f"redis://127.0.0.1:{layout.redis_primary_port}/0",
        }
    )


class KafkaView:
    """The metadata quorum and each node's partition leaderships, asked once for the three nodes' roles
    (every answer is the same whichever node is asked) and kept for a second."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._lock = asyncio.Lock()
        self._at = -math.inf
        self._value: tuple[Quorum, dict[int, int]] | None = None

    async def get(self) -> tuple[Quorum, dict[int, int]] | None:
        async with self._lock:
            if time.monotonic() - self._at > VIEW_TTL_S:
                try:
                    self._value = (
                        await describe_quorum(self._bootstrap),
                        await kafka_admin.leader_counts(self._bootstrap),
                    )
                except (KafkaError, OSError, TimeoutError, QuorumError):
                    self._value = None
                self._at = time.monotonic()
            return self._value


class ClusterKafkaService(KafkaService):
    def __init__(
        self,
        settings: Settings,
        paths: StackPaths,
        state: StackState,
        node: KafkaNode,
        prepare_lock: asyncio.Lock,
        view: KafkaView,
    ) -> None:
        super().__init__(settings, paths, state, node, prepare_lock)
        self._view = view

    async def role(self) -> str | None:
        """From the metadata quorum (DescribeQuorum), plus how many partition leaders this node holds (the
        drills kill the one that leads the most)."""
        view = await self._view.get()
        if view is None:
            return None
        quorum, led = view
        kind = "controller leader" if quorum.leader_id == self.node.node_id else "broker"
        return f"{kind} (leads {led.get(self.node.node_id, 0)} partitions)"


def kafka_nodes(paths: StackPaths, layout: ClusterLayout) -> list[KafkaNode]:
    return [
        KafkaNode(
            name=f"kafka-{n + 1}",
            node_id=n + 1,
            port=layout.kafka_port(n),
            controller_port=layout.kafka_controller_port(n),
            quorum=layout.controller_quorum,
            home=paths.root / "kafka" / f"node-{n + 1}",
            template="cluster-server.properties",
            heap=KAFKA_HEAP,
            standalone=False,
        )
        for n in range(KAFKA_NODES)
    ]


def cluster_services(
    settings: Settings,
    paths: StackPaths,
    state: StackState,
    layout: ClusterLayout,
    *,
    synchronous_standby: bool = False,
) -> list[Service]:
    """Every member; `synchronous_standby`: the primary's commits wait for the standby."""
    members = member_settings(settings, layout)
    prepare = asyncio.Lock()
    view = KafkaView(layout.kafka_bootstrap)
    kafka: list[Service] = [
        ClusterKafkaService(members, paths, state, node, prepare, view) for node in kafka_nodes(paths, layout)
    ]
    primary, standby = pg_services(settings, paths, state, layout, synchronous=synchronous_standby)
    redis = redis_cluster_services(members, paths, state, layout)
    # The front door of `invmon run --cluster`'s edges and relays; up before them, it answers 502 meanwhile.
    nginx = NginxService(members, paths, state, layout)
    return [*kafka, primary, standby, *redis, nginx]


async def provision(
    settings: Settings, paths: StackPaths, layout: ClusterLayout, services: list[Service], reporter: Reporter
) -> None:
    """Once every member is up: topics at rf 3, coordinators, the schema on the primary, cluster.env,
    and the primary's synchronous_standby_names as asked."""
    members = member_settings(settings, layout)
    for primary in (s for s in services if isinstance(s, PrimaryService)):
        sync = "on" if primary.synchronous_standby else "off"
        with reporter.step(primary.name, f"synchronous standby {sync}") as step:
            step.outcome = "reloaded" if await primary.apply_synchronous_standby() else "unchanged"
    bootstrap = layout.kafka_bootstrap
    with reporter.step("kafka", "topics (rf 3, min isr 2)") as step:
        step.outcome = await ensure_topics(bootstrap, members, KAFKA_NODES)
    with reporter.step("kafka", "group/txn coordinators"):
        await wait_until(
            lambda: kafka_admin.coordinators_ready(bootstrap), what="kafka coordinators", timeout_s=60
        )
    with reporter.step("postgres", "migrations on the primary") as step:
        step.outcome = await _migrate(members)
    with reporter.step("cluster", f"write {ENV_FILE}"):
        write_env(settings, paths, layout)


async def _migrate(members: Settings) -> str:
    from db.migrate import upgrade
    from db.partitions import maintain_now

    # Alembic's env runs its own event loop: off this one.
    await asyncio.to_thread(upgrade, members.database_url, "head")
    report = await maintain_now(members)
    return f"at head, {len(report.created)} partitions created"


def env_text(settings: Settings, layout: ClusterLayout) -> str:
    password = Target.from_url(settings.database_url).password
    lines = [f"{key}={value}" for key, value in layout.env(password).items()]
    return (
        "# Written by `invmon stack up --cluster`; `invmon run --cluster` loads it.\n"
        + "\n".join(lines)
        + "\n"
    )


def write_env(settings: Settings, paths: StackPaths, layout: ClusterLayout) -> Path:
    path = paths.root / ENV_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(env_text(settings, layout))
    # It carries the database password.
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def rss_bytes(pid: int) -> int:
    """Resident memory of a server and its children (PostgreSQL's backends, a JVM's helpers)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in procs:
        try:
            total += int(member.memory_info().rss)
        except psutil.Error:
            continue
    return total
