"""What the replicated stack writes before anything starts: members, node configs, topic configs, cluster.env
(no process is started here; tests/cluster brings a real cluster up)."""

from __future__ import annotations

import stat
from pathlib import Path

from contracts.topics import STOCK_COMMANDS
from infra.settings import Settings
from invmon.stack.cluster import ClusterKafkaService, cluster_services, env_text, member_settings, write_env
from invmon.stack.cluster_layout import ClusterLayout
from invmon.stack.kafka_admin import configs_of
from invmon.stack.paths import StackPaths
from invmon.stack.pg_cluster import PrimaryService, StandbyService
from invmon.stack.service import Service
from invmon.stack.state import StackState

LAYOUT = ClusterLayout(47000)
URL = "postgresql+asyncpg://invmon:s3cret@127.0.0.1:25432/invmon"


def _settings() -> Settings:
    return Settings(database_url=URL, kafka_partitions=6)


def _members(tmp_path: Path) -> dict[str, Service]:
    paths = StackPaths(root=tmp_path)
    services = cluster_services(_settings(), paths, StackState(paths.state_file), LAYOUT)
    return {svc.name: svc for svc in services}


def test_every_topic_refuses_unclean_election_and_states_min_isr_only_when_asked() -> None:
    default = configs_of(STOCK_COMMANDS, 3600)
    cluster = configs_of(STOCK_COMMANDS, 3600, min_insync_replicas=2)

    assert default["unclean.leader.election.enable"] == "false"
    # None leaves the broker's default (2 in the cluster), so an old caller cannot lower it to 1.
    assert "min.insync.replicas" not in default
    assert cluster["min.insync.replicas"] == "2"
    assert cluster["retention.ms"] == "3600000"


def test_members_listen_where_the_layout_says(tmp_path: Path) -> None:
    members = _members(tmp_path)

    ports = {name: svc.port for name, svc in members.items()}
    assert ports == {
        "kafka-1": LAYOUT.kafka_port(0),
        "kafka-2": LAYOUT.kafka_port(1),
        "kafka-3": LAYOUT.kafka_port(2),
        "postgres-primary": LAYOUT.postgres_primary_port,
        "postgres-standby": LAYOUT.postgres_standby_port,
        "redis-1": LAYOUT.redis_primary_port,
        "redis-2": LAYOUT.redis_replica_port,
        "sentinel-1": LAYOUT.sentinel_port(0),
        "sentinel-2": LAYOUT.sentinel_port(1),
        "sentinel-3": LAYOUT.sentinel_port(2),
        "nginx": LAYOUT.nginx_port,
    }


def test_each_kafka_node_is_broker_and_controller_in_one_quorum(tmp_path: Path) -> None:
    members = _members(tmp_path)
    texts = []
    for n in (1, 2, 3):
        node = members[f"kafka-{n}"]
        assert isinstance(node, ClusterKafkaService)
        node._write_config()
        texts.append(set((node.node.config_dir / "server.properties").read_text().splitlines()))

    for n, lines in enumerate(texts, start=1):
        assert f"node.id={n}" in lines
        assert f"controller.quorum.voters={LAYOUT.controller_quorum}" in lines
        assert f"advertised.listeners=PLAINTEXT://127.0.0.1:{LAYOUT.kafka_port(n - 1)}" in lines
        assert f"log.dirs={tmp_path / 'kafka' / f'node-{n}' / 'data'}" in lines
        assert {"min.insync.replicas=2", "unclean.leader.election.enable=false"} <= lines
        assert {"offsets.topic.replication.factor=3", "transaction.state.log.min.isr=2"} <= lines


def test_processes_of_the_cluster_replicate_three_times_with_two_in_sync() -> None:
    members = member_settings(_settings(), LAYOUT)

    assert members.kafka_bootstrap == LAYOUT.kafka_bootstrap
    assert (members.kafka_replication_factor, members.kafka_min_insync_replicas) == (3, 2)
    assert members.database_url == LAYOUT.database_url(LAYOUT.postgres_primary_port, "s3cret")


def test_cluster_env_is_the_layouts_environment_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = write_env(_settings(), StackPaths(root=tmp_path), LAYOUT)

    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    assert dict(line.split("=", 1) for line in lines) == LAYOUT.env("s3cret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == env_text(_settings(), LAYOUT)


def test_synchronous_standby_is_a_switch_that_outranks_the_test_profiles_commit_setting(
    tmp_path: Path,
) -> None:
    primary = _members(tmp_path)["postgres-primary"]
    assert isinstance(primary, PrimaryService)

    off = primary._extra_config()
    primary.synchronous_standby = True
    on = primary._extra_config()

    assert "synchronous_standby_names = ''" in off
    assert on[-2:] == ["synchronous_standby_names = 'invmon_standby'", "synchronous_commit = on"]


def test_standby_follows_the_primary_to_a_new_base_port(tmp_path: Path) -> None:
    standby = _members(tmp_path)["postgres-standby"]
    assert isinstance(standby, StandbyService)
    data = tmp_path / "postgres-standby" / "data"
    data.mkdir(parents=True)
    # What `pg_basebackup -R` wrote when the cluster had another base port.
    auto = data / "postgresql.auto.conf"
    auto.write_text(
        "# ALTER SYSTEM\nprimary_conninfo = 'host=127.0.0.1 port=53432'\nprimary_slot_name = 'x'\n"
    )

    standby._write_config()

    conf = (data / "invmon.conf").read_text()
    assert f"port={LAYOUT.postgres_primary_port} user=invmon_replicator password=''s3cret''" in conf
    assert "primary_slot_name = 'invmon_standby'" in conf
    assert auto.read_text() == "# ALTER SYSTEM\n"
