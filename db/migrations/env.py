"""Alembic environment: runs migrations over asyncpg with a lock timeout so a busy table fails fast."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

import db.audit_models  # registers the audit table on Base.metadata
import db.auth_models  # registers the auth tables on Base.metadata
import db.notify_models  # registers the notification tables on Base.metadata
import db.price_models  # noqa: F401  # registers the price tables on Base.metadata
from db.models import Base

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from infra.settings import get_settings

        url = get_settings().database_url
    return url


def _run(connection: Connection) -> None:
    connection.execute(text("SET lock_timeout = '5s'"))
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
