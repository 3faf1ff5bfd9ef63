"""Fixtures of the handler tests that need a database of their own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from infra.settings import Settings
from invmon.stack.paths import StackPaths
from invmon.stack.postgres import SUPERUSER


def dsn(url: str) -> str:
    """asyncpg's form of a SQLAlchemy URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@pytest.fixture
async def scratch(stack: Settings) -> AsyncIterator[str]:
    """The SQLAlchemy URL of a new empty database on the stack's server, dropped afterwards."""
    name = f"part_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(stack.database_url)
    # The pipeline's role may not create databases: the stack's superuser, on its socket, does.
    admin = await asyncpg.connect(
        host=str(StackPaths.from_settings(stack).pg_socket_dir),
        port=parts.port,
        user=SUPERUSER,
        database="postgres",
    )
    await admin.execute(f"CREATE DATABASE {name} OWNER {parts.username}")
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()
