"""PostgreSQL: a private cluster in the stack dir, run as the `postgres` user, on its own port and socket.

Another cluster (the Debian package's own on 5432, or another stack) may run on this machine: everything
here is addressed by our data dir and port, never by service name, so we never touch it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg

from infra.settings import Settings
from invmon.stack.paths import StackPaths
from invmon.stack.procs import (
    StackError,
    ensure_port_free,
    find_ours,
    read_pidfile,
    record_of,
    run,
    wait_reaped,
    wait_until,
)
from invmon.stack.report import Reporter
from invmon.stack.state import StackState
from invmon.stack.system import pg_bin_dir

START_TIMEOUT_S = 60
SUPERUSER = "postgres"
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


@dataclass(frozen=True, slots=True)
class Target:
    """The role, password and database the pipeline uses, taken from `database_url`."""

    user: str
    password: str
    database: str

    @classmethod
    def from_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        database = unquote(parts.path.lstrip("/"))
        if not parts.username or not parts.password or not database:
            raise StackError(f"database_url needs user, password and database name: {url!r}")
        return cls(user=unquote(parts.username), password=unquote(parts.password), database=database)


class PostgresService:
    """The single stack's server; the replicated stack's primary and standby extend it (`name` and `root`
    tell them apart: the port comes from the settings' database_url)."""

    def __init__(
        self,
        settings: Settings,
        paths: StackPaths,
        state: StackState,
        *,
        name: str = "postgres",
        root: Path | None = None,
    ) -> None:
        self._settings = settings
        self._paths = paths
        self._state = state
        self.name = name
        self._root = root or paths.pg_root
        self._target = Target.from_url(settings.database_url)

    @property
    def _data(self) -> Path:
        return self._root / "data"

    @property
    def _socket_dir(self) -> Path:
        return self._root / "run"

    @property
    def port(self) -> int:
        return self._settings.postgres_port

    def running_pid(self) -> int | None:
        # postmaster.pid is written and removed by the server itself; its cmdline carries our data dir.
        pid = read_pidfile(self._data / "postmaster.pid")
        proc = find_ours(pid, ("postgres", str(self._data)), self._state.proc(self.name))
        return proc.pid if proc else None

    async def ready(self) -> bool:
        """The pipeline's view: its role logs in over TCP with the URL's password and sees btree_gist."""
        try:
            conn = await asyncpg.connect(
                host="127.0.0.1",
                port=self.port,
                user=self._target.user,
                password=self._target.password,
                database=self._target.database,
                timeout=2,
            )
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        try:
            found = await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'btree_gist'")
            return bool(found == 1)
        finally:
            await conn.close()

    async def up(self, reporter: Reporter) -> None:
        if self.running_pid() is not None and await self.ready():
            reporter.note(self.name, f"already running on :{self.port}")
            return
        bindir = pg_bin_dir()
        if bindir is None:
            raise StackError("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
        if self.running_pid() is None:
            ensure_port_free(self.name, self.port)
            self._check_socket_path()
            self._prepare_dirs()
            if not (self._data / "PG_VERSION").exists():
                await self._create_data(bindir, reporter)
            self._write_config()
            with reporter.step(self.name, f"start on :{self.port}"):
                await self._clear_stale_lock()
                await self._start(bindir)
        with reporter.step(self.name, "ready (superuser connect)"):
            await wait_until(
                self._superuser_ready, what="postgres", timeout_s=START_TIMEOUT_S, abort=self._died
            )
        with reporter.step(self.name, f"provision {self._target.user}/{self._target.database}"):
            await self._provision()
            if not await self.ready():
                raise StackError(f"postgres: {self._target.user} cannot log in to {self._target.database}")

    async def down(self, reporter: Reporter) -> None:
        pid = self.running_pid()
        if pid is None:
            reporter.note(self.name, "not running")
            self._state.set_proc(self.name, None)
            return
        bindir = pg_bin_dir()
        if bindir is None:
            raise StackError("PostgreSQL server binaries not found, cannot run pg_ctl stop")
        with reporter.step(self.name, f"stop pid {pid} (pg_ctl -m fast)") as step:
            try:
                await self._pg_ctl_stop(bindir, "fast")
            except StackError:
                # A stuck backend can outlast the fast-shutdown wait; immediate mode still leaves no process.
                await self._pg_ctl_stop(bindir, "immediate")
                step.outcome = "stopped with -m immediate (fast timed out)"
        self._state.set_proc(self.name, None)

    async def _pg_ctl_stop(self, bindir: Path, mode: str) -> None:
        cmd = [str(bindir / "pg_ctl"), "-D", str(self._data), "-m", mode, "-w", "-t", "60", "stop"]
        await run(self._as_postgres(cmd), cwd=Path("/"), what=f"pg_ctl stop -m {mode}")

    # --- steps -------------------------------------------------------------------------------------------

    def _as_postgres(self, cmd: list[str]) -> list[str]:
        # initdb and postgres refuse to run as root; as any other user they run as that user directly.
        return ["runuser", "-u", SUPERUSER, "--", *cmd] if os.geteuid() == 0 else cmd

    def _check_socket_path(self) -> None:
        socket_path = self._socket_dir / f".s.PGSQL.{self.port}"
        if len(str(socket_path).encode()) > MAX_SOCKET_PATH:
            raise StackError(
                f"postgres socket path too long for Linux ({socket_path}); use a shorter stack_dir"
            )

    def _prepare_dirs(self) -> None:
        if os.geteuid() != 0:
            for path in (self._root, self._socket_dir):
                path.mkdir(parents=True, exist_ok=True)
            return
        pg = pwd.getpwnam(SUPERUSER)
        _grant_traverse(self._paths.root, pg)
        for path in (self._root, self._socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, pg.pw_uid, pg.pw_gid)
        # The socket dir is the only door to trust auth: nobody but postgres (and root) may enter it.
        self._socket_dir.chmod(0o700)
        # pg_ctl opens the log as postgres; the logs dir itself stays root's.
        log = self._paths.log(self.name)
        log.touch(exist_ok=True)
        os.chown(log, pg.pw_uid, pg.pw_gid)

    async def _create_data(self, bindir: Path, reporter: Reporter) -> None:
        with reporter.step(self.name, f"initdb ({bindir.parent.name})"):
            await self._initdb(bindir)

    async def _initdb(self, bindir: Path) -> None:
        cmd = [
            str(bindir / "initdb"),
            "-D", str(self._data),
            "-U", SUPERUSER,
            "-E", "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-instructions",
        ]  # fmt: skip
        if self._settings.stack_profile == "test":
            cmd.append("--no-sync")
        await run(self._as_postgres(cmd), cwd=Path("/"), what="initdb")
        # Our own settings live in a separate file rewritten on every start, so port/profile changes apply.
        with (self._data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'invmon.conf'\n")

    def _write_config(self) -> None:
        socket_dir = str(self._socket_dir).replace("'", "''")
        lines = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{socket_dir}'",
            "max_connections = 200",
        ]
        if self._settings.stack_profile == "test":
            # Throwaway data: skip every flush. Wrong for `run`, where durability is the point.
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        else:
            lines += ["fsync = on", "synchronous_commit = on", "full_page_writes = on"]
        lines += self._extra_config()
        self._write_owned(self._data / "invmon.conf", "\n".join(lines) + "\n")
        # Trust only through the socket (its dir is 0700); over TCP everyone, the pipeline included,
        # needs a password, which proves the URL's credentials work.
        hba = "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
        self._write_owned(self._data / "pg_hba.conf", hba + self._extra_hba())

    def _extra_config(self) -> list[str]:
        """More invmon.conf lines (a replicated member's)."""
        return []

    def _extra_hba(self) -> str:
        return ""

    def _write_owned(self, path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o600)
        if os.geteuid() == 0:
            pg = pwd.getpwnam(SUPERUSER)
            os.chown(path, pg.pw_uid, pg.pw_gid)

    async def _start(self, bindir: Path) -> None:
        log = self._paths.log(self.name)
        cmd = [
            str(bindir / "pg_ctl"),
            "-D",
            str(self._data),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "start",
        ]
        # pg_ctl -w returns once the server accepts connections; the postmaster is detached from us.
        await run(self._as_postgres(cmd), cwd=Path("/"), what="pg_ctl start")
        pid = read_pidfile(self._data / "postmaster.pid")
        record = record_of(pid) if pid is not None else None
        if record is None:
            raise StackError(f"postgres exited right after start; see {log}")
        self._state.set_proc(self.name, record)

    async def _clear_stale_lock(self) -> None:
        """Make a postmaster.pid left by a crash harmless before pg_ctl start.

        PostgreSQL refuses to start while the pid in its lock file exists, and a killed postmaster stays a
        zombie until init reaps it (some inits take seconds). Once reaped, PostgreSQL removes the stale
        file itself; if the pid was reused by an unrelated process we remove it: we already know no
        server of ours runs on this data dir (running_pid found none and our port is free).
        """
        lock = self._data / "postmaster.pid"
        pid = read_pidfile(lock)
        if pid is not None and await wait_reaped(pid, timeout_s=15):
            lock.unlink(missing_ok=True)

    async def _superuser_connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=str(self._socket_dir),
            port=self.port,
            user=SUPERUSER,
            database="postgres",
            timeout=2,
        )

    async def _superuser_ready(self) -> bool:
        try:
            conn = await self._superuser_connect()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    async def _provision(self) -> None:
        target = self._target
        conn = await self._superuser_connect()
        try:
            # format(%I, %L) quotes server-side: DDL takes no bind parameters and the names come from a URL.
            role_sql = await conn.fetchval(
                "SELECT format(CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1::text)"
                " THEN 'ALTER ROLE %I LOGIN PASSWORD %L'"
                " ELSE 'CREATE ROLE %I LOGIN PASSWORD %L' END, $1::text, $2::text)",
                target.user,
                target.password,
            )
            await conn.execute(role_sql)
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", target.database):
                await conn.execute(
                    await conn.fetchval(
                        "SELECT format('CREATE DATABASE %I OWNER %I', $1::text, $2::text)",
                        target.database,
                        target.user,
                    )
                )
        finally:
            await conn.close()
        conn = await asyncpg.connect(
            host=str(self._socket_dir),
            port=self.port,
            user=SUPERUSER,
            database=target.database,
            timeout=5,
        )
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        finally:
            await conn.close()

    def _died(self) -> str | None:
        if self.running_pid() is not None:
            return None
        return f"not running; see {self._paths.log(self.name)}"


def _grant_traverse(path: Path, user: pwd.struct_passwd) -> None:
    """Let `user` pass through every ancestor of `path` (execute bit only: it can enter, not list).

    The postgres user must reach its data dir, socket dir and log file inside the stack dir, which
    usually sits in a root-owned checkout (e.g. /work/main or /root/project). Keeping PostgreSQL's files
    inside the stack dir (rather than, say, /var/lib/postgresql) keeps the one-directory promise: two
    stacks never share state and `down --purge` removes everything. o+x is the smallest grant that works
    without ACL tools, and is applied only to directories that lack it.
    """
    groups = {g for g in os.getgrouplist(user.pw_name, user.pw_gid)}
    for directory in (path, *path.parents):
        st = directory.stat()
        if st.st_uid == user.pw_uid and st.st_mode & stat.S_IXUSR:
            continue
        if st.st_gid in groups and st.st_mode & stat.S_IXGRP:
            continue
        if st.st_mode & stat.S_IXOTH:
            continue
        with contextlib.suppress(PermissionError):
            directory.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
