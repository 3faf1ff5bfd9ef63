"""`invmon run --cluster`'s plan: two named copies of every Procfile process, each with cluster.env, its own
port from the layout, and the front door's trust where it sits behind nginx."""

from __future__ import annotations

import asyncio
import io
import os
import socket
from pathlib import Path

import pytest

from infra.settings import Settings
from invmon.cluster_run import (
    EPHEMERAL,
    ClusterRunError,
    cluster_envs,
    cluster_processes,
    parse_env_file,
    run_cluster,
    taken_ports,
)
from invmon.runner import Supervisor, parse_procfile
from invmon.stack.cluster_layout import PORT_SETTINGS, ClusterLayout

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = parse_procfile((ROOT / "Procfile").read_text())
LAYOUT = ClusterLayout(40000)
SHARED = {**LAYOUT.env("s3cret"), "INVMON_JWT_SECRET": "from-cluster-env", "INVMON_LOG_LEVEL": "DEBUG"}


def test_every_procfile_process_runs_twice_under_numbered_names() -> None:
    processes = cluster_processes(PROCFILE)
    assert len(processes) == 12
    assert list(processes)[:2] == ["edge.1", "edge.2"]
    for name, command in PROCFILE.items():
        assert processes[f"{name}.1"] == processes[f"{name}.2"] == command


def test_a_process_the_layout_has_no_port_for_is_refused() -> None:
    with pytest.raises(ClusterRunError, match="sidecar"):
        cluster_processes({**PROCFILE, "sidecar": "sleep 1"})


def test_each_copy_has_cluster_env_and_its_own_port() -> None:
    envs = cluster_envs(PROCFILE, LAYOUT, SHARED)
    ports = []
    for name, env in envs.items():
        process, _, copy = name.partition(".")
        port = env[PORT_SETTINGS[process]]
        assert port == str(LAYOUT.process_port(process, int(copy) - 1))
        ports.append(port)
        assert env["INVMON_JWT_SECRET"] == "from-cluster-env"
        assert env["INVMON_KAFKA_BOOTSTRAP"] == LAYOUT.kafka_bootstrap
        assert env["INVMON_DATABASE_URL"] == LAYOUT.database_url(LAYOUT.postgres_primary_port, "s3cret")
    assert len(set(ports)) == 12


def test_only_the_processes_behind_nginx_trust_its_forwarded_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    envs = cluster_envs(PROCFILE, LAYOUT, SHARED)
    trusting = {name for name, env in envs.items() if "INVMON_TRUSTED_PROXIES" in env}
    assert trusting == {"edge.1", "edge.2", "live_relay.1", "live_relay.2"}
    # As the process reads them: JSON lists from its environment.
    monkeypatch.setenv("INVMON_TRUSTED_PROXIES", envs["edge.1"]["INVMON_TRUSTED_PROXIES"])
    monkeypatch.setenv("INVMON_CORS_ORIGINS", envs["live_relay.1"]["INVMON_CORS_ORIGINS"])
    settings = Settings()
    assert settings.trusted_proxies == ["127.0.0.1/32"]
    assert f"http://127.0.0.1:{LAYOUT.nginx_port}" in settings.cors_origins


def test_cluster_env_without_a_database_password_is_refused() -> None:
    with pytest.raises(ClusterRunError, match="INVMON_DATABASE_URL"):
        cluster_envs(PROCFILE, LAYOUT, {"INVMON_KAFKA_BOOTSTRAP": "x:1"})


def test_the_env_file_is_key_value_lines() -> None:
    text = "# written by stack up --cluster\n\nA=1\nB = two=2 \n"
    assert parse_env_file(text) == {"A": "1", "B": "two=2"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_env_file("just words")


def test_without_cluster_env_it_says_to_bring_the_cluster_up(tmp_path: Path) -> None:
    with pytest.raises(ClusterRunError, match="stack up --cluster"):
        run_cluster(Settings(), ROOT / "Procfile", 1.0, tmp_path / "nowhere", LAYOUT)


def test_a_taken_port_is_named_before_any_copy_starts() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        envs = {"edge.2": {"INVMON_EDGE_PORT": str(port)}}
        (taken,) = taken_ports(envs)
    assert taken.startswith(f"edge.2 :{port} ")
    assert ("ephemeral" in taken) == (port in EPHEMERAL)
    assert taken_ports(envs) == []


async def test_a_copy_that_ends_leaves_its_twin_running_and_the_last_copy_ends_them_all(
    tmp_path: Path,
) -> None:
    # a.2 ends once a.1 has been reported (its marker file), so the order is certain without a sleep race.
    marker = tmp_path / "a1-reported"
    procfile = {
        "a.1": "sh -c 'exit 3'",
        "a.2": f"sh -c 'while [ ! -e {marker} ]; do sleep 0.05; done; exit 4'",
        "b.1": "sleep 60",
    }
    out = io.StringIO()

    class Marking(io.StringIO):
        def write(self, text: str) -> int:
            if "a.1 exited" in text:
                marker.touch()
            out.write(text)
            return len(text)

    groups = {"a.1": "a", "a.2": "a", "b.1": "b"}
    supervisor = Supervisor(procfile, dict(os.environ), tmp_path, None, 5.0, Marking(), groups=groups)
    returncode = await asyncio.wait_for(supervisor.run(), 30)
    lines = out.getvalue().splitlines()
    assert any("a.1 exited (rc=3): a.2 carries on" in line for line in lines), lines
    assert any("a.2 exited (rc=4): stopping the others" in line for line in lines), lines
    assert any("b.1 stopped (rc=-15)" in line for line in lines), lines
    assert returncode == 4
