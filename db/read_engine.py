"""Reads that tolerate replication lag: from the standby of INVMON_DATABASE_READ_URL when one is set and
reachable, else from the primary.

Only what a client can see a few hundred milliseconds late goes here (item lists and views, the ledger,
price history, exports, the overview, relay snapshots). A command's outcome, `?wait=`, credentials and
everything an admin writes then reads back stay on the primary: a client that was told "applied" must
never read the state from before it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from prometheus_client import Counter
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.engine import make_engine

READ_FALLBACKS = Counter(
    "invmon_read_fallbacks_total",
    "Reads meant for the read replica that the primary served: `unreachable` (no connection to the "
    "replica) or `behind` (a snapshot's replica had not replayed the primary's position in time).",
    ["reason"],
)
# A stopped standby must cost a read at most this once, not asyncpg's 60 s default.
CONNECT_TIMEOUT_S = 2.0
# After a failed connect, reads go straight to the primary this long before the replica is tried again:
# otherwise every read during an outage would wait out a connect first.
RETRY_AFTER_S = 5.0
# How long a caught-up read waits for the replica to replay the primary's position before it reads from the
# primary instead, and how often it looks. Streaming replication replays within milliseconds when healthy.
CATCH_UP_WAIT_S = 0.5
CATCH_UP_POLL_S = 0.01
# What a replica that is down, starting, or still in recovery without hot_standby looks like at connect
# time: SQLAlchemy's wrap of asyncpg's errors, or the socket's own.
_UNREACHABLE = (exc.DBAPIError, OSError, TimeoutError)


class ReadEngine:
    """The primary's engine plus, when configured, the replica's. `connect()` is `AsyncEngine.connect()`
    for a lag-tolerant read. Only a failure to get a connection falls back; a read that fails once it has
    its connection fails as any read does (its client retries)."""

    def __init__(
        self,
        primary: AsyncEngine,
        replica: AsyncEngine | None = None,
        *,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._skip_until = 0.0

    @classmethod
    def build(cls, primary: AsyncEngine, read_url: str | None) -> ReadEngine:
        """Unset URL: the primary alone, no second pool."""
        if read_url is None:
            return cls(primary)
        return cls(primary, make_engine(read_url, connect_timeout_s=CONNECT_TIMEOUT_S))

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        if self.replica is not None and self._clock() >= self._skip_until:
            entered = False
            try:
                async with self.replica.connect() as conn:
                    entered = True
                    yield conn
                return
            except _UNREACHABLE:
                if entered:
                    raise
                self._skip_until = self._clock() + self._retry_after_s
        if self.replica is not None:
            READ_FALLBACKS.labels("unreachable").inc()
        async with self.primary.connect() as conn:
            yield conn

    @asynccontextmanager
    async def connect_caught_up(self) -> AsyncIterator[AsyncConnection]:
        """`connect()` for a read that must see every transaction the primary committed before the call:
        a relay snapshot answers with a live offset taken just before it, and a replica behind that offset
        would leave a silent gap between the rows and the live feed. One small round trip to the primary
        (its WAL position), then the replica once it has replayed that far; else the primary."""
        if self.replica is None or self._clock() < self._skip_until:
            async with self.connect() as conn:
                yield conn
            return
        async with self.primary.connect() as conn:
            # The insert position, not pg_current_wal_lsn() (the write position): with synchronous_commit
            # off, a commit the client already saw can sit in WAL buffers, past the write position.
            target = await conn.scalar(text("SELECT pg_current_wal_insert_lsn()::text"))
        async with self.connect() as conn:
            if conn.sync_engine is self.primary.sync_engine or await _replayed(conn, str(target)):
                yield conn
                return
        READ_FALLBACKS.labels("behind").inc()
        async with self.primary.connect() as conn:
            yield conn

    async def check_replica(self) -> None:
        """The readiness probe's: raises unless the replica answers (a connect of its own, so a replica
        that came back is seen before the next read tries it)."""
        if self.replica is None:
            return
        async with self.replica.connect() as conn:
            await conn.execute(text("SELECT 1"))
        self._skip_until = 0.0

    async def dispose(self) -> None:
        """Closes the replica's pool; the primary's belongs to whoever built it."""
        if self.replica is not None:
            await self.replica.dispose()


async def _replayed(conn: AsyncConnection, target: str) -> bool:
    """Whether the server behind `conn` has replayed the primary's WAL up to `target`, waiting up to
    CATCH_UP_WAIT_S. A server not in recovery (no replay position: the URL points at a primary) is
    caught up by definition."""
    deadline = time.monotonic() + CATCH_UP_WAIT_S
    query = text("SELECT coalesce(pg_last_wal_replay_lsn() >= CAST(CAST(:target AS text) AS pg_lsn), true)")
    while True:
        if await conn.scalar(query, {"target": target}):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(CATCH_UP_POLL_S)  # replication is a stream: nothing to wait on but its position
