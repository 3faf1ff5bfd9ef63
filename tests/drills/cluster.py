"""The replicated stack as the drills see it from outside: where each member listens (the shared
ClusterLayout), which process that is (the pid listening on the port), how to break it (SIGKILL, a fast
shutdown) and how to bring it back (`invmon stack up --cluster`, which starts only what is missing).

The pipeline's processes are started here, 2 copies of each the drills need, on the layout's ports (the
ones nginx routes to) with the layout's environment, as `invmon run --cluster` does; the drills start
them themselves so they can kill one copy and know which.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no inline types; types-psutil is not a project dependency
from redis.asyncio import Redis
from redis.exceptions import RedisError

from infra.settings import Settings
from invmon.stack.cluster_layout import HOST, KAFKA_NODES, SENTINEL_MASTER, SENTINELS, ClusterLayout
from invmon.stack.kafka_admin import admin_client
from invmon.stack.postgres import Target
from tests import processes

# What the drills run of the pipeline: the price worker and notifier take no part in a receipt's path.
DRILL_PROCESSES = ("edge", "stock_worker", "outbox_relay", "live_relay")
COPIES = 2
STACK_UP_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 5.0


def invmon() -> str:
    return str(Path(sys.executable).with_name("invmon"))


def cluster_dir() -> Path:
    """The replicated stack's state dir (INVMON_CLUSTER_STACK_DIR, relative to the project)."""
    path = Settings().cluster_stack_dir
    return path if path.is_absolute() else processes.ROOT / path


def layout() -> ClusterLayout:
    return ClusterLayout(Settings().cluster_base_port)


def password(settings: Settings) -> str:
    """The cluster's database password: the one in INVMON_DATABASE_URL (`stack up --cluster` uses it)."""
    return Target.from_url(settings.database_url).password


def settings_of(settings: Settings, lay: ClusterLayout) -> Settings:
    """`settings` pointed at the replicated stack: its brokers, primary and Redis (rf 3 topics)."""
    env = lay.env(password(settings))
    return settings.model_copy(
        update={
            "kafka_bootstrap": env["INVMON_KAFKA_BOOTSTRAP"],
            "kafka_replication_factor": int(env["INVMON_KAFKA_REPLICATION_FACTOR"]),
            "database_url": env["INVMON_DATABASE_URL"],
            "redis_url": env["INVMON_REDIS_URL"],
        }
    )


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:`port`, if any."""
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


def sigkill(pid: int, *, with_children: bool = False) -> None:
    """SIGKILL `pid` (and, for a server whose backends are its children, those too: a dead machine)."""
    proc = psutil.Process(pid)
    victims = [proc, *(proc.children(recursive=True) if with_children else [])]
    for victim in victims:
        try:
            victim.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(victims, timeout=10)


def stack_up(extra: tuple[str, ...] = ()) -> str:
    """`invmon stack up --cluster`: brings back whatever member is down; a no-op for the others."""
    done = subprocess.run(
        [invmon(), "stack", "up", "--cluster", *extra],
        capture_output=True,
        text=True,
        timeout=STACK_UP_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stack up --cluster failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def cluster_down_members(lay: ClusterLayout) -> list[str]:
    """Members whose port nobody listens on (empty: the whole cluster is up)."""
    ports = {
        **{f"kafka-{n + 1}": lay.kafka_port(n) for n in range(KAFKA_NODES)},
        "postgres-primary": lay.postgres_primary_port,
        "postgres-standby": lay.postgres_standby_port,
        **{f"sentinel-{n + 1}": lay.sentinel_port(n) for n in range(SENTINELS)},
    }
    listening = {
        c.laddr.port for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN and c.laddr
    }
    return [name for name, port in ports.items() if port not in listening]


async def partition_leaders(bootstrap: str, topics: list[str] | None) -> dict[int, int]:
    """Node id -> how many partitions of `topics` (None: every topic) it leads."""
    async with admin_client(bootstrap, 10_000) as client:
        raw = await client.describe_topics(topics if topics is not None else await client.list_topics())
    counts: dict[int, int] = {}
    for entry in raw:
        for partition in entry["partitions"]:
            leader = int(partition["leader"])
            counts[leader] = counts.get(leader, 0) + 1
    return counts


async def busiest_broker(lay: ClusterLayout) -> int:
    """The node (0, 1, 2) leading the most partitions, of every topic (internal ones included)."""
    counts = await partition_leaders(lay.kafka_bootstrap, None)
    node_id = max(counts, key=lambda n: counts[n])
    return node_id - 1  # the layout's node n has node id n + 1


async def all_partitions_led(lay: ClusterLayout, topics: list[str]) -> bool:
    counts = await partition_leaders(lay.kafka_bootstrap, topics)
    return -1 not in counts


async def redis_master_port(lay: ClusterLayout) -> int:
    """The Redis master's port, as the Sentinels' majority sees it now."""
    answers: dict[int, int] = {}
    for n in range(SENTINELS):
        client = Redis(host=HOST, port=lay.sentinel_port(n), socket_timeout=2)
        try:
            addr = await client.sentinel_get_master_addr_by_name(SENTINEL_MASTER)
            if not isinstance(addr, tuple):
                continue
            port = int(addr[1])
            answers[port] = answers.get(port, 0) + 1
        except (OSError, RedisError):
            continue
        finally:
            await client.aclose()
    if not answers:
        raise RuntimeError("no Sentinel answered")
    return max(answers, key=lambda p: answers[p])


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60.0) -> float:
    """Poll an async `condition()` until true; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if await condition():
                return time.monotonic() - started
        except Exception:  # a member being failed over answers with errors: keep polling
            pass
        await asyncio.sleep(0.2)  # poll interval while waiting for a condition
    raise TimeoutError(f"{what} not after {timeout_s} s")


@dataclass
class Pipeline:
    """2 copies of each drill process on the layout's ports; `kill` and `restart` one copy. `env` goes on
    top of the layout's environment (raised rate limits; the PostgreSQL failover's new primary)."""

    lay: ClusterLayout
    password: str
    env: dict[str, str]
    log_dir: Path
    procs: dict[tuple[str, int], processes.Process] = field(default_factory=dict)

    def start(self, name: str, copy: int) -> processes.Process:
        env = {**self.lay.process_env(name, copy, self.password), **self.env}
        process = processes.start(name, self.lay.process_port(name, copy), self.log_dir, env=env)
        self.procs[(name, copy)] = process
        return process

    def wait_ready(self) -> None:
        for process in self.procs.values():
            processes.wait_ready(process, timeout=120)

    def start_all(self) -> None:
        for name in DRILL_PROCESSES:
            for copy in range(COPIES):
                self.start(name, copy)
        self.wait_ready()

    def kill(self, name: str, copy: int) -> None:
        self.procs[(name, copy)].stop(signal.SIGKILL)

    def restart(self, name: str, copy: int) -> None:
        self.procs[(name, copy)].stop()
        processes.wait_ready(self.start(name, copy), timeout=120)

    def repoint(self, **env: str) -> None:
        """Restart every process with `env` on top (the last step of the PostgreSQL failover), copy 0 of
        each first, then copy 1: one edge and one relay stay up behind nginx throughout."""
        self.env = {**self.env, **env}
        for copy in range(COPIES):
            for name in DRILL_PROCESSES:
                # A process whose database died may hang in its shutdown: do not wait long for it.
                self.procs[(name, copy)].stop(timeout=STOP_TIMEOUT_S)
                self.start(name, copy)
            for name in DRILL_PROCESSES:
                processes.wait_ready(self.procs[(name, copy)], timeout=120)

    def stop_all(self) -> None:
        for process in self.procs.values():
            process.stop()


@contextmanager
def pipeline(
    settings: Settings, lay: ClusterLayout, log_dir: Path, env: dict[str, str]
) -> Iterator[Pipeline]:
    running = Pipeline(lay, password(settings), dict(env), log_dir)
    try:
        running.start_all()
        yield running
    finally:
        running.stop_all()
