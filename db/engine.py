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
    generic_plans: bool = False,
) -> AsyncEngine:
    """`pre_ping=False` saves a round trip per checkout; only for callers that go through
    `command_log.transaction`, which discards a connection found dead. `lock_timeout_ms`: set on every
    connection at connect time (no round trip per transaction). `connect_timeout_s`: asyncpg's own
    default is 60 s, far too long for a caller that has somewhere else to go (`db.read_engine`).
    `generic_plans`: PostgreSQL plans each prepared statement once (plan_cache_mode force_generic_plan),
    for a caller whose statements run thousands of times a second over arrays of any length, and whose
    plans do not depend on the values (the workers, see db/stock_repo.py); otherwise it plans again on
    every run whenever it guesses that a plan for the actual arrays would be cheaper (a third of
    PostgreSQL's CPU for a stock batch of five)."""
    server_settings: dict[str, str] = {}
    if lock_timeout_ms is not None:
        server_settings["lock_timeout"] = str(lock_timeout_ms)
    if generic_plans:
        server_settings["plan_cache_mode"] = "force_generic_plan"
    connect_args: dict[str, Any] = {"server_settings": server_settings} if server_settings else {}
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
