"""Users and API keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


USER_COLUMNS = (User.username, User.roles, User.is_active, User.created_at, User.updated_at)
API_KEY_COLUMNS = (ApiKey.key_id, ApiKey.name, ApiKey.roles, ApiKey.created_at, ApiKey.revoked_at)


async def list_users(conn: AsyncConnection) -> list[RowMapping]:
    """Every user, active or not, without password hashes."""
    return list((await conn.execute(select(*USER_COLUMNS).order_by(User.username))).mappings())


async def create_user(
    conn: AsyncConnection, username: str, password_hash: str, roles: Sequence[str]
) -> RowMapping | None:
    """The new user, or None when the name is taken (active or not)."""
    stmt = (
        insert(User)
        .values(username=username, password_hash=password_hash, roles=list(roles))
        .on_conflict_do_nothing(index_elements=[User.username])
        .returning(*USER_COLUMNS)
    )
    return (await conn.execute(stmt)).mappings().first()


async def change_user(conn: AsyncConnection, username: str, **values: Any) -> RowMapping | None:
    """Set some of roles, password_hash, is_active on a user, active or not; None when there is no such
    user. Locked for the transaction, so two admins' changes apply one after the other."""
    stmt = (
        update(User)
        .where(User.username == username)
        .values(**values, updated_at=func.now())
        .returning(*USER_COLUMNS)
    )
    return (await conn.execute(stmt)).mappings().first()


async def find_user(conn: AsyncConnection, username: str) -> RowMapping | None:
    """A user, active or not, without the password hash."""
    return (await conn.execute(select(*USER_COLUMNS).where(User.username == username))).mappings().first()


async def list_api_keys(conn: AsyncConnection) -> list[RowMapping]:
    """Every API key, revoked ones too, newest first; never the digest."""
    query = select(*API_KEY_COLUMNS).order_by(ApiKey.created_at.desc(), ApiKey.key_id)
    return list((await conn.execute(query)).mappings())


async def find_api_key(conn: AsyncConnection, key_id: str) -> RowMapping | None:
    """A key, revoked or not, without the digest."""
    query = select(*API_KEY_COLUMNS).where(ApiKey.key_id == key_id)
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


async def set_user_active(conn: AsyncConnection, username: str, active: bool) -> bool:
    """Deactivate (or reactivate) a user; False when there is no such user. A deactivated user cannot log
    in at once, and the edge and relay refuse its tokens within `INVMON_PRINCIPAL_REFRESH_S`."""
    result = await conn.execute(
        update(User).where(User.username == username).values(is_active=active, updated_at=func.now())
    )
    return bool(result.rowcount)


async def inactive_subjects(conn: AsyncConnection) -> dict[str, int]:
    """The principal subjects (`user:<name>`) of deactivated users, with when they were deactivated (the
    row's last change, epoch seconds): their logins from before then must be refused."""
    rows = await conn.execute(select(User.username, User.updated_at).where(User.is_active.is_(False)))
    return {f"user:{name}": int(changed.timestamp()) for name, changed in rows}
