"""Prometheus (Debian's package) on 127.0.0.1, scraping the local pipeline with the alert rules of
deploy/prometheus: `invmon stack up --with-prometheus`.

Its config is deploy/prometheus/prometheus.yml rendered for this machine: the same jobs, each target
127.0.0.1 and the port of the settings, the rule files by absolute path. So the rules that run here are the
ones promtool tests and compose mounts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
from pathlib import Path

import httpx

from infra.settings import Settings
from invmon.stack.paths import StackPaths
from invmon.stack.procs import (
    StackError,
    ensure_port_free,
    find_ours,
    read_pidfile,
    wait_until,
)
from invmon.stack.rendering import write_if_changed
from invmon.stack.report import Reporter
from invmon.stack.service import exit_report, start_detached, stop_ours
from invmon.stack.state import StackState
from invmon.stack.system import apt_install

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# Local feedback within seconds; six targets cost nothing at this rate.
SCRAPE_INTERVAL = "5s"
# A development stack: a couple of days of history is plenty and keeps the data dir small.
RETENTION = "2d"
_TARGET = re.compile(r'"(?P<job>edge|stock_worker|price_worker|outbox_relay|notifier|live_relay):\d+"')
_INTERVAL = re.compile(r"^(  (?:scrape|evaluation)_interval): \S+$", re.MULTILINE)


def prometheus_bin() -> str | None:
    return shutil.which("prometheus")


def scrape_ports(settings: Settings) -> dict[str, int]:
    """Where each process serves /metrics, by the job names of deploy/prometheus/prometheus.yml."""
    return {
        "edge": settings.edge_metrics_port or settings.edge_port,
        "stock_worker": settings.stock_worker_port,
        "price_worker": settings.price_worker_port,
        "outbox_relay": settings.outbox_relay_port,
        "notifier": settings.notifier_port,
        "live_relay": settings.live_metrics_port or settings.live_port,
    }


def _missing() -> list[str]:
    return ["prometheus"] if prometheus_bin() is None else []


def rules_dir(settings: Settings) -> Path:
    return (settings.prometheus_rules_dir or DEPLOY / "rules").resolve()


def render_config(settings: Settings) -> str:
    """deploy/prometheus/prometheus.yml with local targets, the configured rules, a short scrape interval.

    Rendered by text (the file's targets are "<job>:<port>"), so its comments survive and the runtime needs
    no YAML library; every job must be found, or the deploy file and this module disagree.
    """
    text = (DEPLOY / "prometheus.yml").read_text()
    ports = scrape_ports(settings)
    found: list[str] = []

    def local(match: re.Match[str]) -> str:
        found.append(match["job"])
        return f'"127.0.0.1:{ports[match["job"]]}"'

    text = _TARGET.sub(local, text)
    if sorted(found) != sorted(ports):
        raise StackError(f"{DEPLOY / 'prometheus.yml'} has targets {sorted(found)}, expected {sorted(ports)}")
    text = _INTERVAL.sub(rf"\g<1>: {SCRAPE_INTERVAL}", text)
    text = text.replace("- rules/*.yml", f"- {json.dumps(str(rules_dir(settings) / '*.yml'))}")
    header = "# Written by `invmon stack up --with-prometheus` from deploy/prometheus/prometheus.yml.\n"
    return header + text


class PrometheusService:
    name = "prometheus"

    def __init__(self, settings: Settings, paths: StackPaths, state: StackState) -> None:
        self._settings = settings
        self._paths = paths
        self._state = state

    @property
    def port(self) -> int:
        return self._settings.prometheus_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def _root(self) -> Path:
        return self._paths.root / "prometheus"

    @property
    def _config(self) -> Path:
        return self._root / "prometheus.yml"

    @property
    def _markers(self) -> tuple[str, ...]:
        return ("prometheus", str(self._config))

    def config_current(self) -> bool:
        """The config on disk is what the settings and deploy/prometheus/prometheus.yml make now."""
        return self._config.exists() and self._config.read_text() == render_config(self._settings)

    def in_use(self) -> bool:
        """Started by `up --with-prometheus` and not stopped since: `status` and `down` include it."""
        return self._state.proc(self.name) is not None or self.running_pid() is not None

    def running_pid(self) -> int | None:
        pid = read_pidfile(self._paths.pidfile(self.name))
        proc = find_ours(pid, self._markers, self._state.proc(self.name))
        return proc.pid if proc else None

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=1.0) as client:
                return (await client.get(f"{self.url}/-/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    async def up(self, reporter: Reporter) -> None:
        await apt_install(_missing(), _missing, reporter)
        binary = prometheus_bin()
        if binary is None:
            raise StackError("prometheus not found")
        changed = write_if_changed(self._config, render_config(self._settings))
        pid = self.running_pid()
        if pid is not None:
            with reporter.step(self.name, f"ready on :{self.port}") as step:
                if changed:
                    # SIGHUP reloads the config and the rules without losing the series scraped so far.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGHUP)
                    step.outcome = "config reloaded"
                else:
                    step.outcome = "already running"
                await wait_until(self.ready, what="prometheus", timeout_s=START_TIMEOUT_S)
            return
        ensure_port_free(self.name, self.port)
        data = self._root / "data"
        data.mkdir(parents=True, exist_ok=True)
        cmd = [
            binary,
            "--config.file", str(self._config),
            "--storage.tsdb.path", str(data),
            "--storage.tsdb.retention.time", RETENTION,
            "--web.listen-address", f"127.0.0.1:{self.port}",
        ]  # fmt: skip
        with reporter.step(self.name, f"start on :{self.port}"):
            await start_detached(self._state, self._paths, self.name, cmd, self._root)
        with reporter.step(self.name, "ready (/-/ready)"):
            await wait_until(self.ready, what="prometheus", timeout_s=START_TIMEOUT_S, abort=self._died)

    async def down(self, reporter: Reporter) -> None:
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
