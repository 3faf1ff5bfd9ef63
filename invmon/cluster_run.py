"""`invmon run --cluster`: two copies of every Procfile process against the replicated stack.

Copy i of process p is named p.<i+1> (edge.1, edge.2) in the console and in its log file, and runs with
<cluster dir>/cluster.env, then ClusterLayout.process_env (its own port) on top. The supervisor is
`invmon run`'s, with the same signals and grace, but a copy that ends (a crash, a drill's SIGKILL) leaves
the others running while the other copy of its process runs: nginx, the consumer groups and the outbox
relay's standby take over, which is the point of two copies. It is not restarted. When the last copy of a
process ends, everything stops, as under `invmon run`.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from infra.settings import Settings
from invmon.runner import child_env, parse_procfile, supervise
from invmon.stack.cluster_layout import ENV_FILE, HOST, PORT_SETTINGS, PROCESS_COPIES, ClusterLayout
from invmon.stack.paths import StackPaths

# Behind nginx: the edges and relays believe its X-Forwarded-For (it connects from the loopback address).
BEHIND_PROXY = ("edge", "live_relay")
# Ports a copy must not inherit from the invoking shell: two copies cannot both listen on one.
SHARED_PORTS = (*PORT_SETTINGS.values(), "INVMON_EDGE_METRICS_PORT", "INVMON_LIVE_METRICS_PORT")


# Linux's default ip_local_port_range: a port in it may be taken by any outgoing connection (a Kafka node's
# to its peers, for instance) before the process meant to listen there starts.
EPHEMERAL = range(32768, 61000)


class ClusterRunError(RuntimeError):
    """The cluster cannot be run as asked; the message says why."""


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines (blank lines and # comments skipped), as cluster.env holds them."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"not a KEY=VALUE line: {line!r}")
        values[key.strip()] = value.strip()
    return values


def copy_name(process: str, copy: int) -> str:
    return f"{process}.{copy + 1}"


def cluster_processes(procfile: Mapping[str, str], copies: int = PROCESS_COPIES) -> dict[str, str]:
    """Every Procfile process `copies` times, copies of one process next to each other."""
    unknown = sorted(set(procfile) - set(PORT_SETTINGS))
    if unknown:
        raise ClusterRunError(f"the cluster layout has no ports for Procfile processes {unknown}")
    return {copy_name(p, c): command for p, command in procfile.items() for c in range(copies)}


def cluster_envs(
    procfile: Mapping[str, str],
    layout: ClusterLayout,
    shared: Mapping[str, str],
    copies: int = PROCESS_COPIES,
) -> dict[str, dict[str, str]]:
    """Per copy: the shared cluster.env, then the layout's variables with the copy's own port, then what
    a process behind the front door needs."""
    password = unquote(urlsplit(shared.get("INVMON_DATABASE_URL", "")).password or "")
    if not password:
        raise ClusterRunError(f"{ENV_FILE} has no INVMON_DATABASE_URL with a password")
    front = f"{HOST}:{layout.nginx_port}"
    envs: dict[str, dict[str, str]] = {}
    for process in procfile:
        for copy in range(copies):
            env = {**shared, **layout.process_env(process, copy, password)}
            if process in BEHIND_PROXY:
                env["INVMON_TRUSTED_PROXIES"] = f'["{HOST}/32"]'
                # The dashboard is served through nginx and opens its WebSocket there: the relay admits
                # that origin.
                env.setdefault(
                    "INVMON_CORS_ORIGINS", f'["http://{front}", "http://localhost:{layout.nginx_port}"]'
                )
            envs[copy_name(process, copy)] = env
    return envs


def taken_ports(envs: Mapping[str, Mapping[str, str]]) -> list[str]:
    """Each copy's port that cannot be bound now (as its server binds: SO_REUSEADDR), with why."""
    taken = []
    for name, env in envs.items():
        port = int(env[PORT_SETTINGS[name.partition(".")[0]]])
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError as error:
                hint = (
                    " (inside the ephemeral port range: held by an outgoing connection?)"
                    if port in EPHEMERAL
                    else ""
                )
                taken.append(f"{name} :{port} {error.strerror}{hint}")
    return taken


def run_cluster(
    settings: Settings, procfile: Path, grace: float, cluster_dir: Path, layout: ClusterLayout
) -> int:
    paths = StackPaths(root=(Path.cwd() / cluster_dir).resolve())
    env_file = paths.root / ENV_FILE
    if not env_file.is_file():
        raise ClusterRunError(f"no {env_file}: bring the cluster up first (`invmon stack up --cluster`)")
    processes = parse_procfile(procfile.read_text())
    base = {k: v for k, v in child_env().items() if k not in SHARED_PORTS}
    envs = cluster_envs(processes, layout, parse_env_file(env_file.read_text()))
    if taken := taken_ports(envs):
        # One copy failing to bind would stop all the others: say which ports, before starting any.
        raise ClusterRunError(
            "ports of the cluster layout are taken: " + "; ".join(taken) + ". Stop what holds them, or move "
            "the cluster (INVMON_CLUSTER_BASE_PORT below 32768 keeps it out of the ephemeral range)"
        )
    copies = cluster_processes(processes)
    groups = {name: name.partition(".")[0] for name in copies}
    return supervise(settings, copies, base, paths.logs / "processes", grace, envs, groups)
