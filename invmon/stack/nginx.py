"""nginx (Debian's package) as the replicated stack's front door: the edges' API and the relays' /v1/live
on one port (layout.nginx_port), run as a process of the stack (its own prefix, config, pid and logs in the
cluster dir), never as the system service.

Its config is deploy/nginx/invmon.conf (the file compose mounts) rendered for this machine: one
`server 127.0.0.1:<port>` line per copy of the edge and the relay, and the layout's listen address. Rendered
by text, like deploy/prometheus/prometheus.yml, so the comments survive and both deployments run one file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from pathlib import Path

import httpx

from infra.settings import Settings
from invmon.stack.cluster_layout import HOST, PROCESS_COPIES, ClusterLayout
from invmon.stack.paths import StackPaths
from invmon.stack.procs import (
    StackError,
    ensure_port_free,
    find_ours,
    read_pidfile,
    run,
    wait_until,
)
from invmon.stack.rendering import write_if_changed
from invmon.stack.report import Reporter
from invmon.stack.service import exit_report, start_detached, stop_ours
from invmon.stack.state import StackState
from invmon.stack.system import apt_install

DEPLOY_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "invmon.conf"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
NAME = "nginx"
# The processes behind the front door, by their compose service name in deploy/nginx/invmon.conf.
UPSTREAMS = ("edge", "live_relay")
_SERVER = re.compile(r"^(?P<indent>[ \t]*)server (?P<process>edge|live_relay):\d+(?P<params>[^;\n]*);$", re.M)
_LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen 80;$", re.M)
# Two WebSocket relays of up to INVMON_LIVE_MAX_CONNECTIONS sockets each, two descriptors per proxied socket.
WORKER_CONNECTIONS = 16384


def nginx_bin() -> str | None:
    # Debian installs it in /usr/sbin, which is not on a non-root PATH.
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


def _missing() -> list[str]:
    return ["nginx"] if nginx_bin() is None else []


def render_site(layout: ClusterLayout, copies: int = PROCESS_COPIES) -> str:
    """deploy/nginx/invmon.conf with the layout's listen address and one server line per copy."""
    text = DEPLOY_CONF.read_text()
    found: list[str] = []

    def servers(match: re.Match[str]) -> str:
        found.append(match["process"])
        lines = [
            f"{match['indent']}server {HOST}:{layout.process_port(match['process'], copy)}{match['params']};"
            for copy in range(copies)
        ]
        return "\n".join(lines)

    text = _SERVER.sub(servers, text)
    text, listens = _LISTEN.subn(lambda m: f"{m['indent']}listen {HOST}:{layout.nginx_port};", text)
    if sorted(found) != sorted(UPSTREAMS) or listens != 1:
        raise StackError(
            f"{DEPLOY_CONF} has server lines for {sorted(found)} and {listens} `listen 80;` lines, "
            f"expected {sorted(UPSTREAMS)} and 1"
        )
    return text


def render_config(layout: ClusterLayout, paths: StackPaths, copies: int = PROCESS_COPIES) -> str:
    """The whole nginx.conf: a stack member's process settings (pid, log, temp files in the cluster dir),
    then the site."""
    temp = paths.root / "nginx" / "tmp"
    return "\n".join(
        [
            "# Written by `invmon stack up --cluster` from deploy/nginx/invmon.conf.",
            "daemon off;",  # the stack tracks the master's pid, as it does every server's
            "worker_processes 1;",  # the cluster shares 2 cores; one worker forwards thousands of requests/s
            f"worker_rlimit_nofile {2 * WORKER_CONNECTIONS};",
            f"pid {paths.pidfile(NAME)};",
            f"error_log {paths.log(NAME)} notice;",
            f"events {{ worker_connections {WORKER_CONNECTIONS}; }}",
            "http {",
            # The edges log one access line per request; a second one here would double the disk writes.
            "access_log off;",
            "server_tokens off;",
            *(
                f"{kind}_temp_path {temp / kind};"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            ),
            render_site(layout, copies),
            "}",
            "",
        ]
    )


class NginxService:
    name = NAME

    def __init__(
        self, settings: Settings, paths: StackPaths, state: StackState, layout: ClusterLayout
    ) -> None:
        self._settings = settings
        self._paths = paths
        self._state = state
        self._layout = layout

    @property
    def port(self) -> int:
        return self._layout.nginx_port

    @property
    def _root(self) -> Path:
        return self._paths.root / "nginx"

    @property
    def config(self) -> Path:
        return self._root / "nginx.conf"

    @property
    def _markers(self) -> tuple[str, ...]:
        return ("nginx", str(self.config))

    def _command(self, binary: str, *extra: str) -> list[str]:
        # -e: nginx opens its error log before it reads the config; the default (/var/log/nginx) is the
        # system service's, and may not be writable.
        return [
            binary,
            "-p",
            str(self._root),
            "-c",
            str(self.config),
            "-e",
            str(self._paths.log(self.name)),
            *extra,
        ]

    def running_pid(self) -> int | None:
        pid = read_pidfile(self._paths.pidfile(self.name))
        proc = find_ours(pid, self._markers, self._state.proc(self.name))
        return proc.pid if proc else None

    async def ready(self) -> bool:
        """nginx itself answers (its own /health/proxy): nothing about the edges behind it."""
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                response = await client.get(f"http://{HOST}:{self.port}/health/proxy")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def role(self) -> str | None:
        edges, relays = await asyncio.gather(self._copies_up("edge"), self._copies_up("live_relay"))
        return f"front door -> {edges}/{PROCESS_COPIES} edges, {relays}/{PROCESS_COPIES} relays up"

    async def _copies_up(self, process: str) -> int:
        async def up(copy: int) -> bool:
            url = f"http://{HOST}:{self._layout.process_port(process, copy)}/health/ready"
            try:
                async with httpx.AsyncClient(timeout=1.0) as client:
                    return (await client.get(url)).status_code == 200
            except httpx.HTTPError:
                return False

        return sum(await asyncio.gather(*(up(copy) for copy in range(PROCESS_COPIES))))

    async def check_config(self) -> str:
        """`nginx -t` on the rendered config: its output, or a StackError saying what is wrong."""
        binary = nginx_bin()
        if binary is None:
            raise StackError("nginx not found")
        return await run(self._command(binary, "-t"), cwd=self._root, what="nginx -t")

    def write_config(self) -> bool:
        return write_if_changed(self.config, render_config(self._layout, self._paths))

    async def up(self, reporter: Reporter) -> None:
        await apt_install(_missing(), _missing, reporter)
        binary = nginx_bin()
        if binary is None:
            raise StackError("nginx not found")
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self._root / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        changed = self.write_config()
        pid = self.running_pid()
        if pid is not None:
            with reporter.step(self.name, f"ready on :{self.port}") as step:
                if changed:
                    await self.check_config()
                    # SIGHUP: new workers with the new config; open connections finish on the old ones.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGHUP)
                    step.outcome = "config reloaded"
                else:
                    step.outcome = "already running"
                await wait_until(self.ready, what="nginx", timeout_s=START_TIMEOUT_S)
            return
        ensure_port_free(self.name, self.port)
        with reporter.step(self.name, "check config (nginx -t)"):
            await self.check_config()
        with reporter.step(self.name, f"start on :{self.port}"):
            await start_detached(self._state, self._paths, self.name, self._command(binary), self._root)
        with reporter.step(self.name, "ready (/health/proxy)"):
            await wait_until(self.ready, what="nginx", timeout_s=START_TIMEOUT_S, abort=self._died)

    async def down(self, reporter: Reporter) -> None:
        # SIGTERM is nginx's fast shutdown: the master stops its workers and removes its pid file.
        await stop_ours(
            reporter,
            self._state,
            self.name,
            self.running_pid(),
            self._markers,
            self._paths.pidfile(self.name),
            timeout_s=STOP_TIMEOUT_S,
        )

    def _died(self) -> str | None:
        return exit_report(self._paths, self.name, self.running_pid())
