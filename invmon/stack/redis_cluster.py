"""Redis of the replicated stack: two redis-server nodes (the first starts as master, the second as its
replica) and three Sentinels (Debian's redis-sentinel) that watch them under one master name.

Each node and Sentinel keeps its config file in the cluster state dir, rendered only when the member is
first created: after a failover Sentinel rewrites both its own file (the new master) and the nodes' files
(`replicaof`), so `up` after a failover restarts every member in the roles Sentinel last chose instead of
forcing the old master back. A node that comes back while its file still calls it master (it was killed
before anyone could rewrite it) is started as a replica of the master the Sentinels' files name.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis.exceptions

from infra.settings import Settings
from invmon.stack.cluster_layout import HOST, SENTINEL_MASTER, SENTINELS, ClusterLayout
from invmon.stack.paths import StackPaths
from invmon.stack.procs import StackError, ensure_port_free, find_ours, read_pidfile, wait_until
from invmon.stack.redis import data_password, probe
from invmon.stack.rendering import render
from invmon.stack.report import Reporter
from invmon.stack.service import Service, start_daemon, stop_ours
from invmon.stack.state import StackState
from invmon.stack.system import apt_install, redis_server_bin

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
QUORUM = 2  # of 3 Sentinels: one may die and a failover still happens
DOWN_AFTER_MS = 3000
FAILOVER_TIMEOUT_MS = 10000
SENTINEL_PACKAGE = "redis-sentinel"

# The three Sentinels start concurrently: one apt-get at a time (dpkg's lock would refuse the others).
_INSTALL = asyncio.Lock()
_MONITOR = re.compile(r"^sentinel monitor (\S+) (\S+) (\d+) \d+\s*$", re.MULTILINE)


def sentinel_bin() -> str | None:
    return shutil.which("redis-sentinel") or next(
        (str(p) for p in (Path("/usr/bin/redis-sentinel"),) if p.exists()), None
    )


def _missing_sentinel() -> list[str]:
    return [] if sentinel_bin() else [SENTINEL_PACKAGE]


def cluster_dir(paths: StackPaths) -> Path:
    return paths.root / "redis-cluster"


def recorded_master(paths: StackPaths, master: str = SENTINEL_MASTER) -> int | None:
    """The master port the Sentinels' config files name (Sentinel rewrites them after a failover); the
    most named one when they disagree, None before any Sentinel was created."""
    ports: list[int] = []
    for n in range(SENTINELS):
        conf = cluster_dir(paths) / f"sentinel-{n + 1}" / "sentinel.conf"
        if conf.exists():
            ports += [int(p) for name, _, p in _MONITOR.findall(conf.read_text()) if name == master]
    return max(set(ports), key=ports.count) if ports else None


async def ask_sentinel(port: int, password: str | None, master: str) -> tuple[str, int] | None:
    """(host, port) of `master` as the Sentinel at `port` names it; None when it does not answer."""
    client = probe(port, password)
    try:
        address = await client.sentinel_get_master_addr_by_name(master)
    except (redis.exceptions.RedisError, OSError):
        return None
    finally:
        await client.aclose()
    if not isinstance(address, tuple):
        return None
    host, master_port = address
    return (host.decode() if isinstance(host, bytes) else host), int(master_port)


async def sentinel_master(layout: ClusterLayout, password: str | None = None) -> int | None:
    """The master port the first Sentinel that answers names (None: none answers), for drills and tools."""
    for n in range(SENTINELS):
        address = await ask_sentinel(layout.sentinel_port(n), password, SENTINEL_MASTER)
        if address is not None:
            return address[1]
    return None


@dataclass(frozen=True, slots=True)
class _Member:
    """What a node and a Sentinel share: a daemonised redis binary with a config file in its own dir."""

    name: str
    port: int
    paths: StackPaths
    state: StackState

    @property
    def dir(self) -> Path:
        return cluster_dir(self.paths) / self.name

    @property
    def pidfile(self) -> Path:
        return self.paths.pidfile(self.name)

    @property
    def logfile(self) -> Path:
        return self.paths.log(self.name)

    @property
    def markers(self) -> tuple[str, ...]:
        # Both binaries rewrite their title to "<binary> 127.0.0.1:<port>" (a Sentinel adds "[sentinel]").
        return (f"{HOST}:{self.port}",)

    def running_pid(self) -> int | None:
        proc = find_ours(read_pidfile(self.pidfile), self.markers, self.state.proc(self.name))
        return proc.pid if proc else None

    def died(self) -> str | None:
        return None if self.running_pid() is not None else f"exited; see {self.logfile}"

    async def already_up(self, ready: Callable[[], Awaitable[bool]], reporter: Reporter) -> bool:
        """True (after waiting until it is ready) when the member already runs: `up` has nothing to do."""
        if self.running_pid() is None:
            return False
        with reporter.step(self.name, f"ready on :{self.port}") as step:
            await wait_until(ready, what=self.name, timeout_s=START_TIMEOUT_S)
            step.outcome = "already running"
        return True

    async def start(
        self, cmd: list[str], ready: Callable[[], Awaitable[bool]], ready_step: str, reporter: Reporter
    ) -> None:
        with reporter.step(self.name, f"start on :{self.port}"):
            await start_daemon(
                self.state, self.name, cmd, self.dir, self.pidfile, self.logfile, timeout_s=START_TIMEOUT_S
            )
        with reporter.step(self.name, ready_step):
            await wait_until(ready, what=self.name, timeout_s=START_TIMEOUT_S, abort=self.died)

    async def down(self, reporter: Reporter) -> None:
        await stop_ours(
            reporter,
            self.state,
            self.name,
            self.running_pid(),
            self.markers,
            self.pidfile,
            timeout_s=STOP_TIMEOUT_S,
        )


class RedisNodeService:
    """One redis-server of the pair; `initial_master` is None for the node that starts as master."""

    def __init__(
        self,
        settings: Settings,
        member: _Member,
        initial_master: int | None,
    ) -> None:
        self._settings = settings
        self._member = member
        self._initial_master = initial_master
        self._password = data_password(settings)
        self.name = member.name

    @property
    def port(self) -> int:
        return self._member.port

    @property
    def config(self) -> Path:
        return self._member.dir / "redis.conf"

    def running_pid(self) -> int | None:
        return self._member.running_pid()

    async def ready(self) -> bool:
        client = probe(self.port, self._password)
        try:
            return bool(await client.ping())
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            await client.aclose()

    async def role(self) -> str | None:
        client = probe(self.port, self._password)
        try:
            info = await client.info("replication")
        except (redis.exceptions.RedisError, OSError):
            return None
        finally:
            await client.aclose()
        if info.get("role") == "master":
            return "master"
        return f"replica of {info.get('master_host')}:{info.get('master_port')}"

    async def up(self, reporter: Reporter) -> None:
        if await self._member.already_up(self.ready, reporter):
            return
        ensure_port_free(self.name, self.port)
        server = redis_server_bin()
        if server is None:
            raise StackError("redis-server not found")
        self._member.dir.mkdir(parents=True, exist_ok=True)
        if not self.config.exists():
            self.config.write_text(self._render(), encoding="utf-8")
        cmd = [server, str(self.config)]
        master = recorded_master(self._member.paths, self._settings.redis_sentinel_master)
        if master is not None and master != self.port and not _has_replicaof(self.config):
            # Killed as master and not yet rewritten: the Sentinels moved on, so it comes back as a replica.
            cmd += ["--replicaof", HOST, str(master)]
        await self._member.start(cmd, self.ready, "ready (PING)", reporter)

    async def down(self, reporter: Reporter) -> None:
        await self._member.down(reporter)

    def _render(self) -> str:
        auth = ""
        if self._password:
            # masterauth too: either node may become the other's replica after a failover.
            auth = f'requirepass "{self._password}"\nmasterauth "{self._password}"'
        # Throwaway data in the test profile: no snapshots, nothing to wait for on shutdown.
        persistence = 'save ""\nappendonly no' if self._settings.stack_profile == "test" else ""
        replicaof = f"replicaof {HOST} {self._initial_master}" if self._initial_master is not None else ""
        return render(
            "redis-node.conf",
            port=str(self.port),
            pidfile=str(self._member.pidfile),
            logfile=str(self._member.logfile),
            dir=str(self._member.dir),
            persistence=persistence,
            auth=auth,
            replicaof=replicaof,
        )


def _has_replicaof(config: Path) -> bool:
    return re.search(r"^\s*(replicaof|slaveof)\s", config.read_text(), re.MULTILINE) is not None


class SentinelService:
    def __init__(self, settings: Settings, member: _Member, master_port: int) -> None:
        self._settings = settings
        self._member = member
        self._master_port = master_port
        secret = settings.redis_sentinel_password
        self._password = secret.get_secret_value() if secret else None
        self.name = member.name

    @property
    def port(self) -> int:
        return self._member.port

    @property
    def config(self) -> Path:
        return self._member.dir / "sentinel.conf"

    def running_pid(self) -> int | None:
        return self._member.running_pid()

    async def ready(self) -> bool:
        """Answers and knows the master (right after start it may not have heard of its peers yet)."""
        return await self._master() is not None

    async def role(self) -> str | None:
        master = await self._master()
        return None if master is None else f"sentinel (master at {master})"

    async def up(self, reporter: Reporter) -> None:
        if await self._member.already_up(self.ready, reporter):
            return
        ensure_port_free(self.name, self.port)
        async with _INSTALL:
            await apt_install(_missing_sentinel(), _missing_sentinel, reporter)
        binary = sentinel_bin()
        if binary is None:
            raise StackError(f"{SENTINEL_PACKAGE} not found")
        self._member.dir.mkdir(parents=True, exist_ok=True)
        if not self.config.exists():  # from then on the Sentinel's own: it records failovers there
            self.config.write_text(self._render(), encoding="utf-8")
        await self._member.start([binary, str(self.config)], self.ready, "ready (master known)", reporter)

    async def down(self, reporter: Reporter) -> None:
        await self._member.down(reporter)

    async def _master(self) -> str | None:
        address = await ask_sentinel(self.port, self._password, self._settings.redis_sentinel_master)
        return None if address is None else f"{address[0]}:{address[1]}"

    def _render(self) -> str:
        master = self._settings.redis_sentinel_master
        lines = []
        data_pw = data_password(self._settings)
        if data_pw:
            lines.append(f'sentinel auth-pass {master} "{data_pw}"')
        if self._password:
            # Its own password, and the one it uses to talk to its peers (they share it).
            lines += [f'requirepass "{self._password}"', f'sentinel sentinel-pass "{self._password}"']
        return render(
            "sentinel.conf",
            port=str(self.port),
            pidfile=str(self._member.pidfile),
            logfile=str(self._member.logfile),
            dir=str(self._member.dir),
            master=master,
            master_port=str(self._master_port),
            quorum=str(QUORUM),
            down_after_ms=str(DOWN_AFTER_MS),
            failover_timeout_ms=str(FAILOVER_TIMEOUT_MS),
            auth="\n".join(lines),
        )


def redis_cluster_services(
    settings: Settings, paths: StackPaths, state: StackState, layout: ClusterLayout
) -> list[Service]:
    """The two nodes first (a Sentinel's `up` waits until it knows the master), then the Sentinels; stopped
    in reverse, Sentinels first, so that stopping the master never triggers a failover."""
    primary, replica = layout.redis_primary_port, layout.redis_replica_port
    services: list[Service] = [
        RedisNodeService(settings, _Member("redis-1", primary, paths, state), None),
        RedisNodeService(settings, _Member("redis-2", replica, paths, state), primary),
    ]
    for n in range(SENTINELS):
        member = _Member(f"sentinel-{n + 1}", layout.sentinel_port(n), paths, state)
        services.append(SentinelService(settings, member, primary))
    return services
