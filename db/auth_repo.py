"""Users and API keys."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import RowMapping, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.auth_models import ApiKey, User


async def upsert_user(conn: AsyncConnection, username: str, password_hash: str, roles: Sequence[str]) -> None:
    stmt = insert(User).values(username=username, password_hash=password_hash, roles=list(roles))
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[User.username],
            set_={
                "password_hash": stmt.excluded.password_hash,
                "roles": stmt.excluded.roles,
                "is_active": True,
            },
        )
    )


async def get_user(conn: AsyncConnection, username: str) -> RowMapping | None:
    query = select(User.__table__).where(User.username == username, User.is_active.is_(True))
    return (await conn.execute(query)).mappings().first()


async def add_api_key(
    conn: AsyncConnection, key_id: str, digest: str, name: str, roles: Sequence[str]
) -> None:
    await conn.execute(
        insert(ApiKey).values(key_id=key_id, secret_sha256=digest, name=name, roles=list(roles))
    )


async def get_api_key(conn: AsyncConnection, key_id: str) -> RowMapping | None:
    query = select(ApiKey.__table__).where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
    return (await conn.execute(query)).mappings().first()


async def revoke_api_key(conn: AsyncConnection, key_id: str) -> bool:
    result = await conn.execute(
        update(ApiKey)
        .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return bool(result.rowcount)
