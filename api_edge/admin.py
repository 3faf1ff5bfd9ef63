"""Admin API for users and API keys: what `invmon user` and `invmon apikey` do, over HTTP, under the
same rules (argon2 passwords of at least 12 characters, names without control characters, known roles).
Every change is recorded in the audit trail in the transaction that makes it."""

from __future__ import annotations

from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Path, Request, Response
from sqlalchemy import RowMapping

from api_edge import audit
from api_edge.auth import actor, require
from api_edge.problems import Problem
from api_edge.state import clients
from contracts.admin import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyView,
    AuditAction,
    UserCreate,
    Username,
    UserUpdate,
    UserView,
)
from db import auth_repo
from infra.credentials import hash_password, new_api_key

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require("admin"))])
UserPath = Annotated[Username, Path(description="The user's login name.")]
KeyPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="The key id shown at creation.")]
# argon2id holds 64 MiB and tens of ms of CPU per hash: off the event loop, two at a time.
_hashing = anyio.CapacityLimiter(2)


def _user(row: RowMapping) -> UserView:
    return UserView(
        username=row["username"],
        roles=row["roles"],
        active=row["is_active"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _not_found(what: str) -> Problem:
    return Problem(404, "Not Found", f"no such {what}", type_="/problems/not-found")


def _conflict(detail: str) -> Problem:
    return Problem(409, "Conflict", detail, type_="/problems/conflict")


async def _hash(password: str) -> str:
    return await anyio.to_thread.run_sync(hash_password, password, limiter=_hashing)


def _is_self(request: Request, username: str) -> bool:
    return actor(request) == f"user:{username}"


@router.get("/users")
async def list_users(request: Request) -> list[UserView]:
    """Every user, deactivated ones too, by name. Password hashes are never shown."""
    async with clients(request).engine.connect() as conn:
        return [_user(row) for row in await auth_repo.list_users(conn)]


@router.post("/users", status_code=201, responses={409: {"description": "The name is taken."}})
async def create_user(body: UserCreate, request: Request) -> UserView:
    """Create a user who can log in at once."""
    password_hash = await _hash(body.password)
    async with clients(request).engine.begin() as conn:
        row = await auth_repo.create_user(conn, body.username, password_hash, body.roles)
        if row is None:
            raise _conflict(f"a user named {body.username!r} exists; change it with PATCH")
        await audit.record(conn, request, "user.create", f"user:{body.username}", roles=body.roles)
    return _user(row)


@router.get("/users/{username}")
async def get_user(username: UserPath, request: Request) -> UserView:
    async with clients(request).engine.connect() as conn:
        row = await auth_repo.find_user(conn, username)
    if row is None:
        raise _not_found("user")
    return _user(row)


@router.patch(
    "/users/{username}", responses={409: {"description": "An admin cannot drop their own admin role."}}
)
async def update_user(username: UserPath, body: UserUpdate, request: Request) -> UserView:
    """Change a user's roles or password. A demoted user's current token keeps its roles until it expires
    or is refreshed."""
    if body.roles is not None and "admin" not in body.roles and _is_self(request, username):
        raise _conflict("you cannot take your own admin role; ask another admin")
    values: dict[str, object] = {}
    if body.roles is not None:
        values["roles"] = body.roles
    if body.password is not None:
        values["password_hash"] = await _hash(body.password)
    async with clients(request).engine.begin() as conn:
        row = (
            await auth_repo.change_user(conn, username, **values)
            if values
            else await auth_repo.find_user(conn, username)
        )
        if row is None:
            raise _not_found("user")
        if values:
            details = {"roles": body.roles} if body.roles is not None else {}
            await audit.record(
                conn,
                request,
                "user.update",
                f"user:{username}",
                **details,
                password_changed=body.password is not None,
            )
    return _user(row)


@router.post(
    "/users/{username}/deactivate", responses={409: {"description": "Admins cannot deactivate themselves."}}
)
async def deactivate_user(username: UserPath, request: Request) -> UserView:
    """The user can no longer log in or refresh a token. Deactivating an inactive user changes nothing."""
    if _is_self(request, username):
        raise _conflict("you cannot deactivate yourself; ask another admin")
    return await _set_active(request, username, active=False)


@router.post("/users/{username}/reactivate")
async def reactivate_user(username: UserPath, request: Request) -> UserView:
    """The user can log in again, with the password and roles they had."""
    return await _set_active(request, username, active=True)


async def _set_active(request: Request, username: str, *, active: bool) -> UserView:
    async with clients(request).engine.begin() as conn:
        row = await auth_repo.find_user(conn, username)
        if row is None:
            raise _not_found("user")
        if row["is_active"] != active:
            row = await auth_repo.change_user(conn, username, is_active=active)
            if row is None:
                raise _not_found("user")
            action: AuditAction = "user.reactivate" if active else "user.deactivate"
            await audit.record(conn, request, action, f"user:{username}")
    return _user(row)


@router.get("/api-keys")
async def list_api_keys(request: Request) -> list[ApiKeyView]:
    """Every API key, revoked ones too, newest first. Keys and their digests are never shown."""
    async with clients(request).engine.connect() as conn:
        return [ApiKeyView(**row) for row in await auth_repo.list_api_keys(conn)]


NO_STORE = {
    "headers": {
        "Cache-Control": {
            "description": "`no-store`: the answer holds the key, which no cache may keep.",
            "schema": {"type": "string"},
        }
    }
}


@router.post("/api-keys", status_code=201, responses={201: NO_STORE})
async def create_api_key(body: ApiKeyCreate, request: Request, response: Response) -> ApiKeyCreated:
    """Create an API key. The key is in this answer only (`Cache-Control: no-store`); it is stored as a
    SHA-256 digest and cannot be shown again."""
    key_id, key, digest = new_api_key()
    async with clients(request).engine.begin() as conn:
        await auth_repo.add_api_key(conn, key_id, digest, body.name, body.roles)
        await audit.record(
            conn, request, "apikey.create", f"apikey:{key_id}", name=body.name, roles=body.roles
        )
        row = await auth_repo.find_api_key(conn, key_id)
    if row is None:
        raise RuntimeError("an API key vanished in the transaction that created it")
    response.headers["Cache-Control"] = "no-store"
    return ApiKeyCreated(**row, key=key)


@router.post("/api-keys/{key_id}/revoke")
async def revoke_api_key(key_id: KeyPath, request: Request) -> ApiKeyView:
    """Revoke a key at once. Revoking a revoked key changes nothing."""
    async with clients(request).engine.begin() as conn:
        if await auth_repo.revoke_api_key(conn, key_id):
            await audit.record(conn, request, "apikey.revoke", f"apikey:{key_id}")
        row = await auth_repo.find_api_key(conn, key_id)
    if row is None:
        raise _not_found("API key")
    return ApiKeyView(**row)
