"""Kafka: one broker in KRaft combined mode (broker + controller in one JVM), started from Maven jars."""

from __future__ import annotations

import re

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
    record_of,
    run,
    spawn_detached,
    tail_text,
    wait_until,
    write_pidfile,
)
from invmon.stack.rendering import render, write_if_changed
from invmon.stack.report import Reporter
from invmon.stack.service import stop_ours
from invmon.stack.state import StackState
from invmon.stack.system import java_bin

START_TIMEOUT_S = 120.0
# Controlled shutdown of a single node is quick, but flushing many partitions can take a while.
STOP_TIMEOUT_S = 60.0
MAIN_CLASS = "kafka.Kafka"
BROKERS = 1


class KafkaService:
    name = "kafka"

    def __init__(self, settings: Settings, paths: StackPaths, state: StackState) -> None:
        self._settings = settings
        self._paths = paths
        self._state = state
        self._dist = KafkaDist(settings.kafka_version, paths.kafka_libs(settings.kafka_version))

    @property
    def port(self) -> int:
        return self._settings.kafka_port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def _server_properties(self) -> str:
        return str(self._paths.kafka_config / "server.properties")

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
                self.ready, what="kafka", timeout_s=START_TIMEOUT_S, interval_s=0.2, abort=self._died
            )
        with reporter.step(self.name, f"topics ({len(ALL_TOPICS)})") as step:
            step.outcome = await self._ensure_topics()
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
        ensure_port_free(f"{self.name} controller", self._settings.kafka_controller_port)
        java = java_bin()
        if java is None:
            raise StackError("java not found (set JAVA_HOME or install a JRE 17)")
        with reporter.step(self.name, f"jars {self._dist.version}") as step:
            if self._dist.complete:
                step.outcome = "cached"
            else:
                step.outcome = await fetch(self._dist, self._paths.maven_project / self._dist.version)
        self._write_config()
        if not (self._paths.kafka_data / "meta.properties").exists():
            with reporter.step(self.name, "format storage (KRaft)") as step:
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
            log = self._paths.log(self.name)
            pid = await spawn_detached(self._java_command(java), log=log, cwd=self._paths.root)
            write_pidfile(self._paths.pidfile(self.name), pid)
            record = record_of(pid)
            if record is None:
                raise StackError(f"kafka exited right after start:\n{tail_text(log, 30)}")
            self._state.set_proc(self.name, record)

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
        self._paths.kafka_data.mkdir(parents=True, exist_ok=True)
        properties = render(
            "server.properties",
            broker_port=str(self.port),
            controller_port=str(self._settings.kafka_controller_port),
            log_dirs=str(self._paths.kafka_data),
            partitions=str(self._settings.kafka_partitions),
        )
        write_if_changed(self._paths.kafka_config / "server.properties", properties)
        logging_file = "log4j2.properties" if self._dist.uses_log4j2 else "log4j.properties"
        write_if_changed(self._paths.kafka_config / logging_file, render(logging_file))

    def _java_command(self, java: str) -> list[str]:
        if self._dist.uses_log4j2:
            logging_flag = f"-Dlog4j2.configurationFile={self._paths.kafka_config / 'log4j2.properties'}"
        else:
            logging_flag = f"-Dlog4j.configuration=file:{self._paths.kafka_config / 'log4j.properties'}"
        heap = self._settings.kafka_heap
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

    async def _ensure_topics(self) -> str:
        names = [topic.name for topic in ALL_TOPICS]
        partitions = self._settings.kafka_partitions
        replication = min(self._settings.kafka_replication, BROKERS)
        existing = await kafka_admin.describe(self.bootstrap, names)
        missing = [topic for topic in ALL_TOPICS if topic.name not in existing]
        try:
            # Every topic: those that exist get the project's configs (re)applied.
            await kafka_admin.create(
                self.bootstrap,
                list(ALL_TOPICS),
                partitions,
                replication,
                command_retention_s=self._settings.command_topic_retention_s,
            )
        except KafkaError as exc:
            raise StackError(f"kafka: {exc}") from exc

        async def all_led() -> bool:
            found = await kafka_admin.describe(self.bootstrap, names)
            return len(found) == len(names) and all(t.all_have_leaders for t in found.values())

        # Creation returns before every partition has a leader; callers expect usable topics.
        await wait_until(all_led, what="kafka topics", timeout_s=60)
        odd = [f"{n} has {t.partitions}" for n, t in existing.items() if t.partitions != partitions]
        outcome = (
            f"created {len(missing)}, existed {len(existing)}, {partitions} partitions, rf {replication}"
        )
        if replication != self._settings.kafka_replication:
            outcome += f" (rf {self._settings.kafka_replication} > {BROKERS} broker)"
        if odd:
            outcome += f"; left as is: {', '.join(odd)}"
        return outcome

    def _died(self) -> str | None:
        if self.running_pid() is not None:
            return None
        return f"broker exited:\n{tail_text(self._paths.log(self.name), 30)}"


def _initial_heap(max_heap: str) -> str:
    """256m initial heap like the notes suggest, unless the max is smaller (the JVM refuses Xms > Xmx)."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", max_heap.strip())
    if match is None:
        return max_heap
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    return "256m" if int(match.group(1)) * scale >= 256 << 20 else max_heap
