"""A throwaway PostgreSQL primary and a hot standby cloned from it with Debian's pg_basebackup (streaming
replication), for the read-replica tests. Run as `postgres` (initdb and postgres refuse root), in a
directory of their own under /tmp, trust auth on loopback only."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from invmon.stack.system import pg_bin_dir

SUPERUSER = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    data: Path
    port: int
    bindir: Path

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        _run(
            self.bindir / "pg_ctl", "-D", self.data, "-l", self.data / "server.log", "-w", "-t", "60", "start"
        )

    def stop(self) -> None:
        _run(self.bindir / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@dataclass
class Pair:
    primary: Server
    standby: Server


def _run(*args: object) -> str:
    cmd = [str(a) for a in args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd="/")
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _configure(data: Path, port: int, sockets: Path, extra: list[str]) -> None:
    lines = [
        f"port = {port}",
        "listen_addresses = '127.0.0.1'",
        f"unix_socket_directories = '{sockets}'",
        "fsync = off",
        "hot_standby = on",
        *extra,
    ]
    with (data / "postgresql.conf").open("a") as conf:
        conf.write("\n" + "\n".join(lines) + "\n")


@contextmanager
def primary_and_standby() -> Iterator[Pair]:
    bindir = pg_bin_dir()
    assert bindir is not None, "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"
    root = Path(tempfile.mkdtemp(prefix="invmon-standby-"))
    root.chmod(0o755)
    sockets = root / "run"
    sockets.mkdir()
    if os.geteuid() == 0:
        pg = pwd.getpwnam(SUPERUSER)
        for path in (root, sockets):
            os.chown(path, pg.pw_uid, pg.pw_gid)
    primary = Server(root / "primary", free_port(), bindir)
    standby = Server(root / "standby", free_port(), bindir)
    try:
        _run(
            bindir / "initdb", "-D", primary.data, "-U", SUPERUSER, "--auth=trust", "--no-sync", "-E", "UTF8"
        )
        _configure(primary.data, primary.port, sockets, ["wal_level = replica", "max_wal_senders = 5"])
        hba = "local all all trust\nlocal replication all trust\nhost all all 127.0.0.1/32 trust\n"
        (primary.data / "pg_hba.conf").write_text(hba)
        primary.start()
        _run(
            bindir / "pg_basebackup", "-h", sockets, "-p", primary.port, "-U", SUPERUSER,
            "-D", standby.data, "-R", "-X", "stream", "--no-sync",
        )  # fmt: skip
        _configure(standby.data, standby.port, sockets, ["hot_standby_feedback = on"])
        standby.start()
        yield Pair(primary, standby)
    finally:
        for server in (standby, primary):
            if server.running():
                server.stop()
        shutil.rmtree(root, ignore_errors=True)
