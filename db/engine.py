"""Engine construction; called from a process's lifespan, never at import."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(
    url: str, *, pool_size: int = 5, pre_ping: bool = True, lock_timeout_ms: int | None = None
) -> AsyncEngine:
    """`pre_ping=False` saves a round trip per checkout; only for callers that go through
    `command_log.transaction`, which discards a connection found dead. `lock_timeout_ms`: set on every
    connection at connect time (no round trip per transaction)."""
    connect_args = (
        {"server_settings": {"lock_timeout": str(lock_timeout_ms)}} if lock_timeout_ms is not None else {}
    )
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping, connect_args=connect_args
    )
