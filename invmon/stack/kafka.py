"""Kafka: a node in KRaft combined mode (broker + controller in one JVM), started from Maven jars.

The single-node stack runs one; the replicated stack (invmon.stack.cluster) runs three of the same.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from aiokafka.errors import KafkaError

from contracts.topics import ALL_TOPICS
from infra.settings import Settings
from invmon.stack import kafka_admin
from invmon.stack.kafka_dist import KafkaDist, fetch
from invmon.stack.paths import StackPaths
from invmon.stack.procs import (
    StackError,
    ensure_port_free,
    find_ours,
    read_pidfile,
    run,
    wait_until,
)
from invmon.stack.rendering import render, write_if_changed
from invmon.stack.report import Reporter
from invmon.stack.service import exit_report, start_detached, stop_ours
from invmon.stack.state import StackState
from invmon.stack.system import java_bin

START_TIMEOUT_S = 120.0
# Controlled shutdown of a single node is quick, but flushing many partitions can take a while.
STOP_TIMEOUT_S = 60.0
MAIN_CLASS = "kafka.Kafka"
BROKERS = 1


@dataclass(frozen=True, slots=True)
class KafkaNode:
    """One node: its service name, ids, ports, the quorum it votes in and the folder it keeps config and
    data in. `standalone`: the only node, which also creates the topics (a cluster does that once, after
    every node is up)."""

    name: str
    node_id: int
    port: int
    controller_port: int
    quorum: str
    home: Path
    template: str
    heap: str
    standalone: bool

    @classmethod
    def single(cls, settings: Settings, paths: StackPaths) -> KafkaNode:
        controller = settings.kafka_controller_port
        return cls(
            name="kafka",
            node_id=1,
            port=settings.kafka_port,
            controller_port=controller,
            quorum=f"1@127.0.0.1:{controller}",
            home=paths.kafka_config.parent,
            template="server.properties",
            heap=settings.kafka_heap,
            standalone=True,
        )

    @property
    def config_dir(self) -> Path:
        return self.home / "config"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"


class KafkaService:
    def __init__(
        self,
        settings: Settings,
        paths: StackPaths,
        state: StackState,
        node: KafkaNode | None = None,
        prepare_lock: asyncio.Lock | None = None,
    ) -> None:
        self._settings = settings
        self._paths = paths
        self._state = state
        self._node = node or KafkaNode.single(settings, paths)
        self.name = self._node.name
        self._dist = KafkaDist(settings.kafka_version, paths.kafka_libs(settings.kafka_version))
        # Nodes of one cluster share the jars and the cluster id: the first to start fetches/makes them.
        self._prepare_lock = prepare_lock or asyncio.Lock()

    @property
    def port(self) -> int:
        return self._node.port

    @property
    def node(self) -> KafkaNode:
        return self._node

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def _server_properties(self) -> str:
        return str(self._node.config_dir / "server.properties")

    def running_pid(self) -> int | None:
        pid = read_pidfile(self._paths.pidfile(self.name))
        proc = find_ours(pid, (MAIN_CLASS, self._server_properties), self._state.proc(self.name))
        return proc.pid if proc else None

    async def ready(self) -> bool:
        return await kafka_admin.metadata_ok(self.bootstrap)

    async def up(self, reporter: Reporter) -> None:
        if self.running_pid() is None:
            await self._start(reporter)
        with reporter.step(self.name, "ready (metadata)"):
            await wait_until(
                self.ready, what=self.name, timeout_s=START_TIMEOUT_S, interval_s=0.2, abort=self._died
            )
        if not self._node.standalone:
            return
        with reporter.step(self.name, f"topics ({len(ALL_TOPICS)})") as step:
            step.outcome = await ensure_topics(self.bootstrap, self._settings, BROKERS)
        with reporter.step(self.name, "group/txn coordinators"):
            await wait_until(
                lambda: kafka_admin.coordinators_ready(self.bootstrap),
                what="kafka coordinators",
                timeout_s=60,
            )

    async def down(self, reporter: Reporter) -> None:
        await stop_ours(
            reporter,
            self._state,
            self.name,
            self.running_pid(),
            (MAIN_CLASS, self._server_properties),
            self._paths.pidfile(self.name),
            timeout_s=STOP_TIMEOUT_S,
            timed_out="killed (controlled shutdown timed out)",
        )

    # --- steps -------------------------------------------------------------------------------------------

    async def _start(self, reporter: Reporter) -> None:
        ensure_port_free(self.name, self.port)
        ensure_port_free(f"{self.name} controller", self._node.controller_port)
        java = java_bin()
        if java is None:
            raise StackError("java not found (set JAVA_HOME or install a JRE 17)")
        async with self._prepare_lock:
            with reporter.step(self.name, f"jars {self._dist.version}") as step:
                if self._dist.complete:
                    step.outcome = "cached"
                else:
                    step.outcome = await fetch(self._dist, self._paths.maven_project / self._dist.version)
        self._write_config()
        if not (self._node.data_dir / "meta.properties").exists():
            with reporter.step(self.name, "format storage (KRaft)") as step:
                async with self._prepare_lock:
                    cluster_id = await self._cluster_id(java)
                await run(
                    [
                        java, "-cp", self._dist.classpath, "kafka.tools.StorageTool", "format",
                        "-t", cluster_id, "-c", self._server_properties, "--ignore-formatted",
                    ],
                    what="kafka storage format",
                )  # fmt: skip
                step.outcome = f"cluster id {cluster_id}"
        with reporter.step(self.name, f"start on :{self.port}"):
            await start_detached(
                self._state, self._paths, self.name, self._java_command(java), self._paths.root
            )

    async def _cluster_id(self, java: str) -> str:
        if self._state.kafka_cluster_id:
            return self._state.kafka_cluster_id
        out = await run(
            [java, "-cp", self._dist.classpath, "kafka.tools.StorageTool", "random-uuid"],
            what="kafka random-uuid",
        )
        match = re.search(r"^[A-Za-z0-9_-]{22}$", out, re.MULTILINE)
        if match is None:
            raise StackError(f"StorageTool random-uuid printed no cluster id:\n{out}")
        self._state.kafka_cluster_id = match.group(0)
        return match.group(0)

    def _write_config(self) -> None:
        node = self._node
        node.data_dir.mkdir(parents=True, exist_ok=True)
        properties = render(
            node.template,
            node_id=str(node.node_id),
            quorum=node.quorum,
            broker_port=str(node.port),
            controller_port=str(node.controller_port),
            log_dirs=str(node.data_dir),
            partitions=str(self._settings.kafka_partitions),
        )
        write_if_changed(node.config_dir / "server.properties", properties)
        logging_file = "log4j2.properties" if self._dist.uses_log4j2 else "log4j.properties"
        write_if_changed(node.config_dir / logging_file, render(logging_file))

    def _java_command(self, java: str) -> list[str]:
        if self._dist.uses_log4j2:
            logging_flag = f"-Dlog4j2.configurationFile={self._node.config_dir / 'log4j2.properties'}"
        else:
            logging_flag = f"-Dlog4j.configuration=file:{self._node.config_dir / 'log4j.properties'}"
        heap = self._node.heap
        return [
            java,
            f"-Xms{_initial_heap(heap)}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            logging_flag,
            "-cp",
            self._dist.classpath,
            MAIN_CLASS,
            self._server_properties,
        ]

    def _died(self) -> str | None:
        return exit_report(self._paths, self.name, self.running_pid())


async def ensure_topics(bootstrap: str, settings: Settings, brokers: int) -> str:
    """Create the project's topics (and re-apply their configs) with the settings' replication, capped at
    `brokers`; return once every partition has a leader, with a short outcome text."""
    names = [topic.name for topic in ALL_TOPICS]
    partitions = settings.kafka_partitions
    replication = min(settings.kafka_replication_factor, brokers)
    min_insync = min(settings.kafka_min_insync_replicas, replication)
    existing = await kafka_admin.describe(bootstrap, names)
    missing = [topic for topic in ALL_TOPICS if topic.name not in existing]
    try:
        # Every topic: those that exist get the project's configs (re)applied.
        await kafka_admin.create(
            bootstrap,
            list(ALL_TOPICS),
            partitions,
            replication,
            command_retention_s=settings.command_topic_retention_s,
            min_insync_replicas=min_insync,
        )
    except KafkaError as exc:
        raise StackError(f"kafka: {exc}") from exc

    async def all_led() -> bool:
        found = await kafka_admin.describe(bootstrap, names)
        return len(found) == len(names) and all(t.all_have_leaders for t in found.values())

    # Creation returns before every partition has a leader; callers expect usable topics.
    await wait_until(all_led, what="kafka topics", timeout_s=60)
    odd = [f"{n} has {t.partitions}" for n, t in existing.items() if t.partitions != partitions]
    outcome = (
        f"created {len(missing)}, existed {len(existing)}, {partitions} partitions, rf {replication}, "
        f"min isr {min_insync}"
    )
    if replication != settings.kafka_replication_factor:
        outcome += f" (rf {settings.kafka_replication_factor} > {brokers} broker)"
    if odd:
        outcome += f"; left as is: {', '.join(odd)}"
    return outcome


def _initial_heap(max_heap: str) -> str:
    """256m initial heap like the notes suggest, unless the max is smaller (the JVM refuses Xms > Xmx)."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", max_heap.strip())
    if match is None:
        return max_heap
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    return "256m" if int(match.group(1)) * scale >= 256 << 20 else max_heap
