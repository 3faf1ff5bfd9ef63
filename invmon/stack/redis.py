"""Redis: one daemonised redis-server per stack, bound to 127.0.0.1."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from infra.settings import Settings
from invmon.stack.paths import StackPaths
from invmon.stack.procs import (
    StackError,
    ensure_port_free,
    find_ours,
    read_pidfile,
    record_of,
    run,
    wait_until,
)
from invmon.stack.report import Reporter
from invmon.stack.service import stop_ours
from invmon.stack.state import StackState
from invmon.stack.system import redis_server_bin

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


class RedisService:
    name = "redis"

    def __init__(self, settings: Settings, paths: StackPaths, state: StackState) -> None:
        self._settings = settings
        self._paths = paths
        self._state = state
        password = urlsplit(settings.redis_url).password
        self._password = unquote(password) if password else None

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
        # One bare attempt: redis-py's default retries with backoff would turn each probe into seconds.
        client = aioredis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self._password,
            socket_connect_timeout=1,
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
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
        pidfile.unlink(missing_ok=True)
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
            # Returns once the daemon has forked; the pid file appears a moment later.
            await run(cmd, cwd=self._paths.redis_dir, what="redis-server")
            await wait_until(self._pidfile_written, what="redis pid file", timeout_s=START_TIMEOUT_S)
            pid = read_pidfile(pidfile)
            record = record_of(pid) if pid is not None else None
            if record is None:
                raise StackError(f"redis exited right after start; see {self._paths.log(self.name)}")
            self._state.set_proc(self.name, record)
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

    async def _pidfile_written(self) -> bool:
        return read_pidfile(self._paths.pidfile(self.name)) is not None

    def _died(self) -> str | None:
        return None if self.running_pid() is not None else f"exited; see {self._paths.log(self.name)}"
