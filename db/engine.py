"""Engine construction; called from a process's lifespan, never at import."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    pre_ping: bool = True,
    lock_timeout_ms: int | None = None,
    connect_timeout_s: float | None = None,
) -> AsyncEngine:
    """`pre_ping=False` saves a round trip per checkout; only for callers that go through
    `command_log.transaction`, which discards a connection found dead. `lock_timeout_ms`: set on every
    connection at connect time (no round trip per transaction). `connect_timeout_s`: asyncpg's own
    default is 60 s, far too long for a caller that has somewhere else to go (`db.read_engine`)."""
    connect_args: dict[str, Any] = (
        {"server_settings": {"lock_timeout": str(lock_timeout_ms)}} if lock_timeout_ms is not None else {}
    )
    if connect_timeout_s is not None:
        connect_args["timeout"] = connect_timeout_s
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping, connect_args=connect_args
    )
    event.listen(engine.sync_engine, "reset", _end_driver_transaction)
    return engine


def _end_driver_transaction(dbapi_connection: Any, _record: Any, _state: Any) -> None:
    """SQLAlchemy's reset on return only ends the transactions it started. One begun on the asyncpg driver
    (`command_log.driver`) whose rollback a cancellation cut short (a client leaving a streamed export)
    would go back to the pool still open, or aborted, and fail the next checkout. Raising here makes the
    pool discard the connection (it logs "Exception during reset"): asyncpg's own transaction object,
    which still counts as open, goes with it."""
    raw = dbapi_connection.driver_connection
    if raw is not None and raw.is_in_transaction():
        raise LeftInTransaction("a driver-level transaction was still open at check-in; connection discarded")


class LeftInTransaction(Exception):
    pass
