"""Static checks of compose.yaml and the Dockerfile against the code they run (no Docker needed)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_PATH = ROOT / "compose.yaml"
DOCKERFILE_PATH = ROOT / "Dockerfile"
INFRA_SERVICES = ("kafka", "postgres", "redis")
INVMON_VAR = re.compile(r"\bINVMON_[A-Z0-9_]+")


def _procfile() -> dict[str, str]:
    processes: dict[str, str] = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = command.strip()
    return processes


PROCESSES = _procfile()
# Processes whose port setting is not named after the process.
PORT_FIELDS = {"live_relay": "live_port"}
PUBLISHED = {"edge", "live_relay"}  # the HTTP edge and the WebSocket relay face clients
# Opt-in (`--profile monitoring`), published on loopback for the operator's browser.
MONITORING = {"prometheus", "grafana"}


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load(COMPOSE_PATH.read_text())
    assert "version" not in compose, "compose.yaml must not have the obsolete `version:` key"
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _argv(command: str | list[str] | None) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = (service.get("healthcheck") or {}).get("test")
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return [str(part) for part in test or []]


def test_procfile_names_processes() -> None:
    assert PROCESSES, "Procfile names no process"


def test_infra_and_init_services_exist(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name in (*INFRA_SERVICES, "init") if name not in services]
    assert not missing, f"compose.yaml lacks services: {missing}"


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_procfile_process_has_a_service_with_its_command(
    services: dict[str, dict[str, Any]], process: str
) -> None:
    assert process in services, f"compose.yaml has no service for Procfile process {process!r}"
    command = services[process].get("command")
    assert _argv(command) == shlex.split(PROCESSES[process]), (
        f"service {process!r} runs {command!r}, Procfile says {PROCESSES[process]!r}"
    )


@pytest.mark.parametrize("path", [COMPOSE_PATH, DOCKERFILE_PATH], ids=lambda p: p.name)
def test_every_invmon_variable_is_a_settings_field(path: Path) -> None:
    known = {f"INVMON_{field.upper()}" for field in Settings.model_fields}
    named = set(INVMON_VAR.findall(path.read_text()))
    assert named, f"{path.name} names no INVMON_ variable"
    unknown = sorted(named - known)
    assert not unknown, f"{path.name} names INVMON_ variables that Settings does not have: {unknown}"


@pytest.mark.parametrize("process", sorted(PROCESSES))
def test_app_service_waits_for_init_and_has_a_readiness_healthcheck(
    services: dict[str, dict[str, Any]], process: str
) -> None:
    service = services.get(process)
    assert service is not None, f"compose.yaml has no service for Procfile process {process!r}"
    depends_on = service.get("depends_on") or {}
    condition = depends_on.get("init", {}).get("condition") if isinstance(depends_on, dict) else None
    assert condition == "service_completed_successfully", (
        f"service {process!r} must depend on init with condition service_completed_successfully, "
        f"has depends_on={depends_on!r}"
    )
    health = _healthcheck_argv(service)
    assert health, f"service {process!r} has no healthcheck"
    env = _environment(service)
    assert env.get("INVMON_EDGE_HOST") == "0.0.0.0", (
        f"service {process!r} must listen on all interfaces (INVMON_EDGE_HOST=0.0.0.0), env has "
        f"{env.get('INVMON_EDGE_HOST')!r}"
    )
    port_field = PORT_FIELDS.get(process, f"{process}_port")
    assert port_field in Settings.model_fields, f"Settings has no {port_field} for process {process!r}"
    port = env.get(f"INVMON_{port_field.upper()}") or str(Settings.model_fields[port_field].default)
    assert f":{port}/health/ready" in " ".join(health), (
        f"healthcheck of {process!r} should probe /health/ready on port {port}: {health}"
    )


@pytest.mark.parametrize("name", INFRA_SERVICES)
def test_infra_service_has_a_healthcheck(services: dict[str, dict[str, Any]], name: str) -> None:
    assert name in services, f"compose.yaml lacks service {name!r}"
    assert _healthcheck_argv(services[name]), f"infra service {name!r} has no healthcheck"


def test_init_waits_for_healthy_kafka_and_postgres(services: dict[str, dict[str, Any]]) -> None:
    depends_on = services["init"].get("depends_on") or {}
    for name in ("kafka", "postgres"):
        condition = depends_on.get(name, {}).get("condition") if isinstance(depends_on, dict) else None
        assert condition == "service_healthy", (
            f"init must wait for {name} with condition service_healthy, has depends_on={depends_on!r}"
        )


def test_init_runs_existing_cli_commands(services: dict[str, dict[str, Any]]) -> None:
    from typer.testing import CliRunner

    from invmon.cli import app

    command = " ".join(_argv(services["init"].get("command")))
    used = re.findall(r"\binvmon\s+([a-z][\w-]*)\s+([a-z][\w-]*)", command)
    for needed in (("topics", "create"), ("db", "upgrade")):
        assert needed in used, f"init command {command!r} does not run `invmon {' '.join(needed)}`"
    runner = CliRunner()
    for group, subcommand in used:
        result = runner.invoke(app, [group, subcommand, "--help"])
        assert result.exit_code == 0, (
            f"`invmon {group} {subcommand} --help` exited {result.exit_code}: {result.output}"
        )


def test_only_the_client_facing_processes_are_published_on_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    allowed = PUBLISHED | MONITORING
    assert set(published) <= allowed, f"only {allowed} may publish ports, found {published}"
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} port {port!r} must bind to 127.0.0.1 only"


def test_kafka_never_auto_creates_topics(services: dict[str, dict[str, Any]]) -> None:
    value = _environment(services["kafka"]).get("KAFKA_AUTO_CREATE_TOPICS_ENABLE")
    assert value == "false", f"kafka must set KAFKA_AUTO_CREATE_TOPICS_ENABLE=false, has {value!r}"


def _dockerfile_copy_sources() -> set[str]:
    sources: set[str] = set()
    for line in DOCKERFILE_PATH.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() in {"COPY", "ADD"}:
            args = [word for word in words[1:] if not word.startswith("--")]
            sources.update(arg.rstrip("/").removeprefix("./") for arg in args[:-1])
    return sources


def test_dockerfile_copies_every_package_and_the_project_files() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in includes}
    needed = packages | {"pyproject.toml", "Procfile", pyproject["project"]["readme"]}
    missing = sorted(needed - _dockerfile_copy_sources())
    assert not missing, f"Dockerfile does not COPY: {missing}"


@pytest.mark.parametrize("name", sorted(MONITORING))
def test_monitoring_runs_only_in_its_profile_from_the_deploy_files(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services.get(name)
    assert service is not None, f"compose.yaml has no {name} service"
    assert service.get("profiles") == ["monitoring"], f"{name} must run only in the monitoring profile"
    mounts = [str(volume).split(":")[0] for volume in service.get("volumes", [])]
    local = [mount for mount in mounts if mount.startswith("./")]
    assert local, f"{name} mounts nothing from the repository"
    for mount in local:
        assert mount.startswith("./deploy/"), f"{name} mounts {mount}, not a deploy/ file"
        assert (ROOT / mount).exists(), f"{name} mounts {mount}, which does not exist"


def test_prometheus_mounts_the_rules_the_config_names(services: dict[str, dict[str, Any]]) -> None:
    volumes = [str(volume) for volume in services["prometheus"].get("volumes", [])]
    assert "./deploy/prometheus:/etc/prometheus:ro" in volumes
    assert "--config.file=/etc/prometheus/prometheus.yml" in _argv(services["prometheus"].get("command"))
