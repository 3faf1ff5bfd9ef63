"""Static checks of compose.yaml and the Dockerfile against the code they run (no Docker needed)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_PATH = ROOT / "compose.yaml"
CLUSTER_COMPOSE_PATH = ROOT / "compose.cluster.yaml"
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
# nginx faces clients; the edges and relays behind it publish nothing, so `--scale` never clashes on a port.
PUBLISHED = {"nginx"}
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


_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value: str, given: dict[str, str]) -> str:
    """compose's ${NAME}, ${NAME:-default} and ${NAME:?error} against `given` (the shell or .env)."""

    def one(match: re.Match[str]) -> str:
        if given.get(match["name"]):
            return given[match["name"]]
        if match["op"] == "?":
            raise AssertionError(f"{match['name']} is required: {match['arg']}")
        return match["arg"] or ""

    return _INTERPOLATION.sub(one, value)


def test_every_smtp_setting_reaches_the_notifier(services: dict[str, dict[str, Any]]) -> None:
    env = _environment(services["notifier"])
    wanted = {f"INVMON_{name.upper()}" for name in Settings.model_fields if name.startswith("smtp_")}
    missing = sorted((wanted | {"INVMON_NOTIFY_ADMIN_EMAIL"}) - set(env))
    assert not missing, f"the notifier does not get {missing} from the environment or .env"
    for name in wanted:
        assert f"${{{name}" in env[name], f"{name} is not taken from the environment or .env: {env[name]!r}"


def test_the_notifier_reads_unset_optional_smtp_settings_as_none(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _environment(services["notifier"]).items():
        if name.startswith("INVMON_SMTP_") or name == "INVMON_NOTIFY_ADMIN_EMAIL":
            monkeypatch.setenv(name, _interpolate(value, {}))
    settings = Settings(_env_file=None)
    assert (settings.smtp_username, settings.smtp_password, settings.smtp_ca_file) == (None, None, None)
    assert settings.notify_admin_email is None
    defaults = Settings.model_construct()
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_from) == (
        defaults.smtp_host,
        defaults.smtp_port,
        defaults.smtp_from,
    )
    monkeypatch.setenv(
        "INVMON_SMTP_USERNAME", _interpolate("${INVMON_SMTP_USERNAME:-}", {"INVMON_SMTP_USERNAME": "u"})
    )
    assert Settings(_env_file=None).smtp_username == "u"


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
    for needed in (("topics", "create"), ("db", "upgrade"), ("user", "add")):
        assert needed in used, f"init command {command!r} does not run `invmon {' '.join(needed)}`"
    runner = CliRunner()
    for group, subcommand in used:
        result = runner.invoke(app, [group, subcommand, "--help"])
        assert result.exit_code == 0, (
            f"`invmon {group} {subcommand} --help` exited {result.exit_code}: {result.output}"
        )


def test_init_creates_the_first_admin_from_required_variables_once(
    services: dict[str, dict[str, Any]],
) -> None:
    command = " ".join(_argv(services["init"].get("command")))
    add = command[command.index("invmon user add") :]
    assert "--if-absent" in add, "init runs at every start: it must not reset the admin's password"
    assert "--password-stdin" in add, "the password must not be on a command line"
    assert "--role admin" in add
    env = _environment(services["init"])
    for name in ("ADMIN_USERNAME", "ADMIN_PASSWORD"):
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", env.get(name, "")), (
            f"{name} must be required (no usable default), is {env.get(name)!r}"
        )


def test_the_scaled_processes_sit_behind_nginx(services: dict[str, dict[str, Any]]) -> None:
    nginx = services["nginx"]
    assert "./deploy/nginx/invmon.conf:/etc/nginx/conf.d/default.conf:ro" in nginx.get("volumes", [])
    conf = (ROOT / "deploy" / "nginx" / "invmon.conf").read_text()
    for process, port_field in (("edge", "edge_port"), ("live_relay", "live_port")):
        port = _environment(services[process])[f"INVMON_{port_field.upper()}"]
        assert re.search(rf"^\s*server {process}:{port}\b", conf, re.M), (
            f"nginx does not front {process}:{port}"
        )
        assert not services[process].get("ports"), f"{process} publishes a port: `--scale` would clash"
        condition = (nginx.get("depends_on") or {}).get(process, {}).get("condition")
        assert condition == "service_healthy", f"nginx must wait for a healthy {process}"
    assert "/health/proxy" in " ".join(_healthcheck_argv(nginx))


def test_dockerfile_exposes_every_process_port() -> None:
    exposed = {
        int(port)
        for line in DOCKERFILE_PATH.read_text().splitlines()
        if line.startswith("EXPOSE")
        for port in line.split()[1:]
    }
    defaults = Settings.model_construct()
    wanted = {getattr(defaults, PORT_FIELDS.get(p, f"{p}_port")) for p in PROCESSES}
    assert wanted <= exposed, f"Dockerfile does not EXPOSE {sorted(wanted - exposed)}"


def _docker_compose() -> list[str] | None:
    for candidate in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(candidate[0]) is None:
            continue
        probe = subprocess.run([*candidate, "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return candidate
    return None


@pytest.mark.parametrize("path", [COMPOSE_PATH, CLUSTER_COMPOSE_PATH], ids=lambda p: p.name)
def test_docker_compose_accepts_the_file(path: Path) -> None:
    compose = _docker_compose()
    if compose is None:
        pytest.skip("docker compose is not installed here (the static checks above still run)")
    env = {
        **os.environ,
        "INVMON_JWT_SECRET": "x" * 48,
        "POSTGRES_PASSWORD": "0" * 48,
        "ADMIN_USERNAME": "admin",
        "ADMIN_PASSWORD": "a-password-of-some-length",
    }
    result = subprocess.run(
        [*compose, "-f", str(path), "config", "--quiet"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


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
