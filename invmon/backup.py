"""`invmon db backup` / `invmon db restore`: a logical backup in pg_dump's custom format, restored into an
empty database.

The tools come from the PostgreSQL installation the stack manager uses (Debian keeps one bin dir per
major; a pg_dump older than the server refuses to dump it), else from PATH. The password travels in
PGPASSWORD, never in argv, where any local user could read it. After a restore the workers replay the
command topics from Kafka: ids already in `processed_commands` are skipped, so only the commands after the
backup are applied (see the README's "Backup and restore" runbook).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg

from invmon.stack.system import pg_bin_dir


class BackupError(RuntimeError):
    """A backup or restore could not run, or was refused."""


@dataclass(frozen=True, slots=True)
class Conninfo:
    host: str
    port: int
    user: str
    password: str | None
    database: str

    @classmethod
    def from_url(cls, url: str) -> Conninfo:
        parts = urlsplit(url)
        database = unquote(parts.path.lstrip("/"))
        if not parts.username or not database:
            raise BackupError("the database URL needs a user and a database name")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username),
            password=unquote(parts.password) if parts.password else None,
            database=database,
        )

    def args(self) -> list[str]:
        return ["--host", self.host, "--port", str(self.port), "--username", self.user, "--no-password"]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def dsn(self) -> str:
        return f"postgresql://{self.host}:{self.port}/{self.database}"


def tool(name: str) -> str:
    bindir = pg_bin_dir()
    if bindir is not None and (bindir / name).exists():
        return str(bindir / name)
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install postgresql-client matching the server's major version")
    return found


def _run(cmd: list[str], conn: Conninfo, what: str) -> None:
    done = subprocess.run(cmd, env=conn.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def backup(url: str, output: Path) -> None:
    """pg_dump -Fc of the whole database to `output` (written to a temporary name, then renamed, so a failed
    dump never leaves a file that looks like a backup)."""
    conn = Conninfo.from_url(url)
    partial = output.with_name(output.name + ".partial")
    try:
        _run(
            [tool("pg_dump"), *conn.args(), "--format=custom", "--file", str(partial), conn.database],
            conn,
            "pg_dump",
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(output)


async def user_relations(conn: Conninfo) -> int:
    """Tables, sequences and views outside the system schemas (extensions' own objects excluded)."""
    pg = await asyncpg.connect(conn.dsn(), user=conn.user, password=conn.password)
    try:
        found: int = await pg.fetchval(
            """
            SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'S', 'v', 'm')
              AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
            """
        )
        return found
    finally:
        await pg.close()


def restore(source: Path, target_url: str, *, clean: bool = False) -> None:
    """pg_restore into `target_url`'s database in one transaction. A target that holds tables is refused
    unless `clean` (drop what the backup contains first): a restore on top of live data would mix two
    histories."""
    if not source.is_file():
        raise BackupError(f"no backup file at {source}")
    conn = Conninfo.from_url(target_url)
    existing = asyncio.run(user_relations(conn))
    if existing and not clean:
        raise BackupError(
            f"database {conn.database} is not empty ({existing} relations): restore into a fresh database, "
            "or pass --clean to drop and replace what the backup holds"
        )
    cmd = [
        tool("pg_restore"),
        *conn.args(),
        "--dbname",
        conn.database,
        "--exit-on-error",
        "--single-transaction",
    ]
    # Owners and grants of the source cluster may not exist here; the restoring role owns everything.
    cmd += ["--no-owner", "--no-privileges"]
    if clean:
        cmd += ["--clean", "--if-exists"]
    with tempfile.TemporaryDirectory() as tmp:
        toc = Path(tmp) / "toc.list"
        _run([tool("pg_restore"), "--list", "--file", str(toc), str(source)], conn, "pg_restore --list")
        # An extension a superuser already made in the target (btree_gist, by the stack manager or an init
        # job) belongs to them: its COMMENT would fail the restore, and only the comment is lost.
        entries = toc.read_text().splitlines()
        toc.write_text("\n".join(e for e in entries if " COMMENT - EXTENSION " not in e) + "\n")
        _run([*cmd, "--use-list", str(toc), str(source)], conn, "pg_restore")
