"""The replicated stack from the outside: what `invmon stack up|status|down --cluster` promise, and that the
replication it sets up holds a record through a killed broker and carries a row to the standby.

The tests share one cluster (session fixture) and run in file order: the last one stops it.
"""

from __future__ import annotations

import io
import signal
import uuid

import asyncpg
import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console

from contracts.topics import ALL_TOPICS, Topic
from infra.kafka import raw_producer, read_topic_configs
from infra.settings import Settings
from invmon.stack import kafka_admin, manager
from invmon.stack.cluster import cluster_paths, layout_of
from invmon.stack.cluster_layout import ClusterLayout
from invmon.stack.postgres import Target
from invmon.stack.report import Reporter
from tests.integration.helpers import wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MEMBERS = {
    "kafka-1", "kafka-2", "kafka-3", "postgres-primary", "postgres-standby", "redis-1", "redis-2",
    "sentinel-1", "sentinel-2", "sentinel-3", "nginx",
}  # fmt: skip
# A new topic per run: one left by an interrupted run (or created with other settings) proves nothing.
PROBE_TOPIC = Topic(f"invmon.test.cluster-probe-{uuid.uuid4().hex[:8]}", "Never read by the pipeline.")


def _quiet() -> Console:
    return Console(file=io.StringIO())


def _pids(settings: Settings) -> dict[str, int | None]:
    return {row.name: row.pid for row in manager.status(settings, cluster=True)}


def test_second_up_starts_nothing(settings: Settings, cluster: Settings) -> None:
    before = _pids(settings)
    output = io.StringIO()

    did_something = manager.up(settings, Console(file=output), cluster=True)

    assert did_something is False
    assert "cluster already up" in output.getvalue()
    assert _pids(settings) == before
    assert set(before) == MEMBERS
    assert all(pid is not None for pid in before.values())
    env = (cluster_paths(settings).root / "cluster.env").read_text()
    assert f"INVMON_KAFKA_BOOTSTRAP={layout_of(settings).kafka_bootstrap}\n" in env


def test_status_shows_each_members_role(settings: Settings, cluster: Settings) -> None:
    rows = {row.name: row for row in manager.status(settings, cluster=True)}

    assert set(rows) == MEMBERS
    assert all(row.running and row.ready for row in rows.values()), rows
    kafka_roles = sorted(str(rows[f"kafka-{n}"].role) for n in (1, 2, 3))
    assert [r.split(" (")[0] for r in kafka_roles] == ["broker", "broker", "controller leader"], kafka_roles
    assert str(rows["postgres-primary"].role).startswith("primary (1 standby streaming)")
    assert str(rows["postgres-standby"].role).startswith("standby (lag ")
    assert str(rows["nginx"].role).startswith("front door -> ")
    assert str(rows["redis-1"].role) == "master"
    assert str(rows["redis-2"].role) == f"replica of 127.0.0.1:{rows['redis-1'].port}"
    for n in (1, 2, 3):
        assert str(rows[f"sentinel-{n}"].role) == f"sentinel (master at 127.0.0.1:{rows['redis-1'].port})"


async def test_project_topics_are_replicated_three_times_with_two_in_sync(cluster: Settings) -> None:
    names = [topic.name for topic in ALL_TOPICS]
    async with kafka_admin.admin_client(cluster.kafka_bootstrap, 10_000) as client:
        described = await client.describe_topics(names)
    replicas = {(t["topic"], p["partition"]): len(p["replicas"]) for t in described for p in t["partitions"]}
    configs = await read_topic_configs(cluster, names)

    assert set(replicas.values()) == {3}, replicas
    for name in names:
        assert configs[name]["min.insync.replicas"] == "2", name
        assert configs[name]["unclean.leader.election.enable"] == "false", name


async def test_acknowledged_record_survives_its_leader_killed(settings: Settings, cluster: Settings) -> None:
    # Created the way the stack creates the project's topics, with the cluster's replication settings.
    await kafka_admin.create(
        cluster.kafka_bootstrap,
        [PROBE_TOPIC],
        1,
        cluster.kafka_replication_factor,
        min_insync_replicas=cluster.kafka_min_insync_replicas,
    )
    leader = await _leader(cluster.kafka_bootstrap, PROBE_TOPIC.name)
    marker = uuid.uuid4().hex.encode()
    producer = raw_producer(cluster, client_id="cluster-test")
    await producer.start()
    try:
        await producer.send_and_wait(PROBE_TOPIC.name, marker, key=b"before")
        rows = await manager.status_async(settings, cluster=True)
        (victim,) = [row.pid for row in rows if row.name == f"kafka-{leader}"]
        assert victim is not None
        psutil.Process(victim).send_signal(signal.SIGKILL)
        # Two replicas stay in sync: acks=all writes go on once a new leader is elected.
        await producer.send_and_wait(PROBE_TOPIC.name, marker, key=b"after")
    finally:
        await producer.stop()

    survivors = ",".join(
        f"127.0.0.1:{layout_of(settings).kafka_port(n)}" for n in range(3) if n + 1 != leader
    )
    keys = await _keys_with(survivors, PROBE_TOPIC.name, marker)
    assert keys == [b"before", b"after"]
    assert await _leader(survivors, PROBE_TOPIC.name) != leader
    async with kafka_admin.admin_client(survivors, 10_000) as client:
        await client.delete_topics([PROBE_TOPIC.name])

    # The killed node comes back for the tests after this one.
    await manager.up_async(settings, Reporter(_quiet()), cluster=True)
    assert all(row.running and row.ready for row in await manager.status_async(settings, cluster=True))


async def test_row_written_on_the_primary_is_read_on_the_standby(
    settings: Settings, cluster: Settings
) -> None:
    layout = layout_of(settings)
    password = Target.from_url(cluster.database_url).password
    primary = await asyncpg.connect(_dsn(layout, layout.postgres_primary_port, password))
    standby = await asyncpg.connect(_dsn(layout, layout.postgres_standby_port, password))
    marker = uuid.uuid4().hex
    try:
        await primary.execute("CREATE TABLE IF NOT EXISTS cluster_test_probe (marker text PRIMARY KEY)")
        await primary.execute("INSERT INTO cluster_test_probe VALUES ($1)", marker)

        async def replicated() -> int:
            exists = await standby.fetchval("SELECT to_regclass('cluster_test_probe') IS NOT NULL")
            if not exists:
                return 0
            return int(
                await standby.fetchval("SELECT count(*) FROM cluster_test_probe WHERE marker = $1", marker)
            )

        await wait_until(replicated, lambda n: n == 1, within=30, what="the row on the standby")
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await standby.execute("INSERT INTO cluster_test_probe VALUES ('refused')")
    finally:
        await primary.execute("DROP TABLE IF EXISTS cluster_test_probe")
        await primary.close()
        await standby.close()


def test_down_leaves_no_process(settings: Settings, cluster: Settings) -> None:
    ours = [psutil.Process(pid) for pid in _pids(settings).values() if pid is not None]
    ours += [child for proc in ours for child in proc.children(recursive=True)]
    root = str(cluster_paths(settings).root)

    manager.down(settings, console=_quiet(), cluster=True)

    assert not any(row.running for row in manager.status(settings, cluster=True))
    alive = [p.pid for p in ours if _alive(p)]
    assert not alive, f"still running after down: {alive}"
    mentioning = [p.pid for p in psutil.process_iter() if _alive(p) and any(root in a for a in _cmdline(p))]
    assert not mentioning, f"processes naming {root}: {mentioning}"


async def _leader(bootstrap: str, topic: str) -> int:
    async with kafka_admin.admin_client(bootstrap, 10_000) as client:
        (described,) = await client.describe_topics([topic])
    (partition,) = described["partitions"]
    return int(partition["leader"])


async def _keys_with(bootstrap: str, topic: str, marker: bytes) -> list[bytes]:
    """Keys of the records carrying `marker`, read from the start of the topic's one partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: list[bytes] = []
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)

        async def read() -> list[bytes]:
            batch = await consumer.getmany(partition, timeout_ms=500)
            found.extend(r.key for r in batch.get(partition, []) if r.value == marker and r.key is not None)
            return found

        return await wait_until(read, lambda keys: len(keys) >= 2, within=60, what="both probe records")
    finally:
        await consumer.stop()


def _dsn(layout: ClusterLayout, port: int, password: str) -> str:
    return layout.database_url(port, password).replace("postgresql+asyncpg://", "postgresql://", 1)


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return list(proc.cmdline())
    except psutil.Error:
        return []
