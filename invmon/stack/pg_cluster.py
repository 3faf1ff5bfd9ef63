"""PostgreSQL of the replicated stack: a primary and a hot standby fed by streaming replication.

Both are the single stack's PostgresService (Debian's binaries, a private data dir, run as `postgres`); the
primary adds WAL for replication, a replication role and a physical slot; the standby is a pg_basebackup -R
of it (primary_conninfo + standby.signal) that refuses writes and replays the primary's WAL.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from infra.settings import Settings
from invmon.stack.cluster_layout import ClusterLayout
from invmon.stack.paths import StackPaths
from invmon.stack.postgres import PostgresService, Target
from invmon.stack.procs import StackError, run, wait_until
from invmon.stack.report import Reporter
from invmon.stack.state import StackState

REPLICATION_USER = "invmon_replicator"
SLOT = "invmon_standby"
# The standby's walreceiver connects under this application_name: pg_stat_replication shows it, and it is
# the name `synchronous_standby_names` must list to make commits wait for the standby.
STANDBY_NAME = "invmon_standby"
BASEBACKUP_TIMEOUT_S = 120.0


class PrimaryService(PostgresService):
    """`synchronous_standby`: commits wait until the standby has flushed them (`synchronous_standby_names`
    names it); off by default, so a dead standby never blocks writes."""

    def __init__(
        self,
        settings: Settings,
        paths: StackPaths,
        state: StackState,
        *,
        synchronous_standby: bool = False,
    ) -> None:
        super().__init__(
            settings, paths, state, name="postgres-primary", root=paths.root / "postgres-primary"
        )
        self.synchronous_standby = synchronous_standby

    def _extra_config(self) -> list[str]:
        lines = [
            "wal_level = replica",
            "max_wal_senders = 5",
            "max_replication_slots = 5",
            "hot_standby = on",
        ]
        if self.synchronous_standby:
            # The last setting in the file wins: the test profile's synchronous_commit = off would make
            # the standby's acknowledgement moot.
            return [*lines, f"synchronous_standby_names = '{STANDBY_NAME}'", "synchronous_commit = on"]
        return [*lines, "synchronous_standby_names = ''"]

    async def apply_synchronous_standby(self) -> bool:
        """Bring a running primary's config to `synchronous_standby` (rewrite, reload: no restart). True
        if it changed."""
        conf = self._data / "invmon.conf"
        before = conf.read_text() if conf.exists() else None
        self._write_config()
        if conf.read_text() == before:
            return False
        conn = await self._superuser_connect()
        try:
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()
        return True

    def _extra_hba(self) -> str:
        return f"host replication {REPLICATION_USER} 127.0.0.1/32 scram-sha-256\n"

    async def _provision(self) -> None:
        await super()._provision()
        conn = await self._superuser_connect()
        try:
            role_sql = await conn.fetchval(
                "SELECT format(CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1::text)"
                " THEN 'ALTER ROLE %I REPLICATION LOGIN PASSWORD %L'"
                " ELSE 'CREATE ROLE %I REPLICATION LOGIN PASSWORD %L' END, $1::text, $2::text)",
                REPLICATION_USER,
                self._target.password,
            )
            await conn.execute(role_sql)
            # The slot keeps the WAL a stopped standby still needs (the drills stop it and start it again).
            await conn.execute(
                "SELECT pg_create_physical_replication_slot($1) WHERE NOT EXISTS"
                " (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
                SLOT,
            )
        finally:
            await conn.close()

    async def replication_ready(self) -> bool:
        """The replication role logs in and the slot exists: a standby can be cloned from here."""
        try:
            conn = await self._superuser_connect()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        try:
            found = await conn.fetchval(
                "SELECT count(*) FROM pg_replication_slots s, pg_roles r"
                " WHERE s.slot_name = $1 AND r.rolname = $2 AND r.rolreplication",
                SLOT,
                REPLICATION_USER,
            )
            return bool(found == 1)
        finally:
            await conn.close()

    async def standby_lag(self) -> int | None:
        """Bytes of WAL the standby has not replayed yet, as the primary sees it; None if not streaming."""
        conn = await self._superuser_connect()
        try:
            lag = await conn.fetchval(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint FROM pg_stat_replication"
                " WHERE application_name = $1 AND state = 'streaming'",
                STANDBY_NAME,
            )
        finally:
            await conn.close()
        return None if lag is None else int(lag)

    async def role(self) -> str | None:
        return await _role_of(self)


class StandbyService(PostgresService):
    def __init__(
        self, settings: Settings, paths: StackPaths, state: StackState, primary: PrimaryService
    ) -> None:
        super().__init__(
            settings, paths, state, name="postgres-standby", root=paths.root / "postgres-standby"
        )
        self._primary = primary

    def _extra_config(self) -> list[str]:
        return [f"cluster_name = '{STANDBY_NAME}'", "hot_standby = on", "hot_standby_feedback = on"]

    def _extra_hba(self) -> str:
        # Once promoted (the failover runbook), a new standby clones from here.
        return f"host replication {REPLICATION_USER} 127.0.0.1/32 scram-sha-256\n"

    async def _create_data(self, bindir: Path, reporter: Reporter) -> None:
        with reporter.step(self.name, "wait for the primary"):
            await wait_until(
                self._primary.replication_ready,
                what="primary for pg_basebackup",
                timeout_s=BASEBACKUP_TIMEOUT_S,
            )
        with reporter.step(self.name, f"pg_basebackup from :{self._primary.port}"):
            conninfo = (
                f"host=127.0.0.1 port={self._primary.port} user={REPLICATION_USER} "
                f"password={_conn_value(self._target.password)} application_name={STANDBY_NAME}"
            )
            # -R writes primary_conninfo and primary_slot_name to postgresql.auto.conf plus standby.signal.
            cmd = [
                str(bindir / "pg_basebackup"),
                "-d", conninfo,
                "-D", str(self._data),
                "-R", "-X", "stream", "-S", SLOT, "-c", "fast", "--no-sync",
            ]  # fmt: skip
            if self._settings.stack_profile != "test":
                cmd.remove("--no-sync")
            await run(self._as_postgres(cmd), cwd=Path("/"), what="pg_basebackup")

    async def _provision(self) -> None:
        """Nothing to create: a standby is read-only; the role, database and extension come in the WAL."""

    async def role(self) -> str | None:
        return await _role_of(self, self._primary)


async def _role_of(service: PostgresService, primary: PrimaryService | None = None) -> str | None:
    try:
        conn = await service._superuser_connect()
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        in_recovery = bool(await conn.fetchval("SELECT pg_is_in_recovery()"))
        if not in_recovery:
            senders = await conn.fetchval("SELECT count(*) FROM pg_stat_replication")
            return f"primary ({senders} standby streaming)"
        receiving = await conn.fetchval("SELECT status FROM pg_stat_wal_receiver")
    finally:
        await conn.close()
    lag: int | None = None
    if primary is not None:
        try:
            lag = await primary.standby_lag()
        except (OSError, asyncpg.PostgresError, TimeoutError):
            lag = None
    if lag is not None:
        return f"standby (lag {lag} bytes)"
    return f"standby ({receiving or 'not streaming'})"


def _conn_value(value: str) -> str:
    """A libpq conninfo value, quoted so spaces and quotes in a password survive."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pg_services(
    settings: Settings,
    paths: StackPaths,
    state: StackState,
    layout: ClusterLayout,
    *,
    synchronous: bool = False,
) -> tuple[PrimaryService, StandbyService]:
    password = Target.from_url(settings.database_url).password
    primary = PrimaryService(
        settings.model_copy(
            update={"database_url": layout.database_url(layout.postgres_primary_port, password)}
        ),
        paths,
        state,
        synchronous_standby=synchronous,
    )
    standby = StandbyService(
        settings.model_copy(
            update={"database_url": layout.database_url(layout.postgres_standby_port, password)}
        ),
        paths,
        state,
        primary,
    )
    if not password:
        raise StackError("INVMON_DATABASE_URL has no password for the cluster's database role")
    return primary, standby
