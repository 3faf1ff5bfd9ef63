"""Redis: one daemonised redis-server per stack, bound to 127.0.0.1."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from infra.settings import Settings
from invmon.stack.cluster_layout import HOST
from invmon.stack.paths import StackPaths
from invmon.stack.procs import StackError, ensure_port_free, find_ours, read_pidfile, wait_until
from invmon.stack.report import Reporter
from invmon.stack.service import start_daemon, stop_ours
from invmon.stack.state import StackState
from invmon.stack.system import redis_server_bin

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def data_password(settings: Settings) -> str | None:
    """The data password redis_url carries (None: no AUTH)."""
    password = urlsplit(settings.redis_url).password
    return unquote(password) if password else None


def probe(port: int, password: str | None) -> aioredis.Redis:
    """A client for one cheap check of a server of ours."""
    # One bare attempt: redis-py's default retries with backoff would turn each probe into seconds.
    return aioredis.Redis(
        host=HOST,
        port=port,
        password=password,
        socket_connect_timeout=1,
        socket_timeout=1,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


class RedisService:
    name = "redis"

    def __init__(self, settings: Settings, paths: StackPaths, state: StackState) -> None:
        self._settings = settings
        self._paths = paths
        self._state = state
        self._password = data_password(settings)

    @property
    def port(self) -> int:
        return self._settings.redis_port

    @property
    def _markers(self) -> tuple[str, ...]:
        # redis-server rewrites its title to "redis-server 127.0.0.1:<port>" once daemonised.
        return ("redis-server", f"127.0.0.1:{self.port}")

    def running_pid(self) -> int | None:
        pid = read_pidfile(self._paths.pidfile(self.name))
        proc = find_ours(pid, self._markers, self._state.proc(self.name))
        return proc.pid if proc else None

    async def ready(self) -> bool:
        client = probe(self.port, self._password)
        try:
            return bool(await client.ping())
        except (redis.exceptions.RedisError, OSError):
            return False
        finally:
            await client.aclose()

    async def up(self, reporter: Reporter) -> None:
        if self.running_pid() is not None:
            with reporter.step(self.name, f"ready on :{self.port}") as step:
                await wait_until(self.ready, what="redis", timeout_s=START_TIMEOUT_S)
                step.outcome = "already running"
            return
        ensure_port_free(self.name, self.port)
        server = redis_server_bin()
        if server is None:
            raise StackError("redis-server not found")
        self._paths.redis_dir.mkdir(parents=True, exist_ok=True)
        pidfile = self._paths.pidfile(self.name)
        cmd = [
            server,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--daemonize", "yes",
            "--pidfile", str(pidfile),
            "--dir", str(self._paths.redis_dir),
            "--logfile", str(self._paths.log(self.name)),
        ]  # fmt: skip
        if self._password:
            cmd += ["--requirepass", self._password]
        if self._settings.stack_profile == "test":
            # Throwaway data: no snapshots, no append-only file, nothing to wait for on shutdown.
            cmd += ["--save", "", "--appendonly", "no"]
        with reporter.step(self.name, f"start on :{self.port}"):
            log = self._paths.log(self.name)
            await start_daemon(
                self._state, self.name, cmd, self._paths.redis_dir, pidfile, log, timeout_s=START_TIMEOUT_S
            )
        with reporter.step(self.name, "ready (PING)"):
            await wait_until(self.ready, what="redis", timeout_s=START_TIMEOUT_S, abort=self._died)

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
        return None if self.running_pid() is not None else f"exited; see {self._paths.log(self.name)}"
