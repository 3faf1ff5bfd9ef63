"""Engine construction; called from a process's lifespan, never at import."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(url: str, *, pool_size: int = 5, pre_ping: bool = True) -> AsyncEngine:
    """`pre_ping=False` saves a round trip per checkout; only for callers that go through
    `command_log.transaction`, which discards a connection found dead."""
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=pre_ping)
