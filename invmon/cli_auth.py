"""`invmon user ...` and `invmon apikey ...`: people and machine clients of the HTTP edge."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncConnection

from contracts.admin import MIN_PASSWORD_CHARS, AuditAction
from db import audit_repo, auth_repo
from db.audit_repo import AuditRecord
from db.engine import make_engine
from infra.credentials import ROLES, hash_password, new_api_key, valid_username
from infra.settings import get_settings, refuse_unsafe_settings

user_app = typer.Typer(help="Users of the HTTP edge (OAuth2 password flow).", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for machine clients.", no_args_is_help=True)
console = Console(highlight=False)

RoleOption = Annotated[
    list[str], typer.Option("--role", "-r", help=f"Repeatable; one of {', '.join(ROLES)}.")
]


def _roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if unknown or not roles:
        raise typer.BadParameter(
            f"give roles from {', '.join(ROLES)} (unknown: {', '.join(unknown) or 'none'})"
        )
    return sorted(set(roles))


# The published demo password (./dev up, local only): never a production password.
DEMO_PASSWORDS = frozenset({"demo-password-local"})


def _issuing() -> None:
    """Credentials are issued only where the edge could run: the same production checks as a process."""
    refuse_unsafe_settings(get_settings())


def _operator() -> str:
    """Who runs the CLI, for the audit trail: the OS user (the uid when the system has no name for it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _audit(action: AuditAction, target: str, **details: object) -> AuditRecord:
    return AuditRecord(f"cli:{_operator()}", action, target, "local", dict(details))


@asynccontextmanager
async def _transaction() -> AsyncIterator[AsyncConnection]:
    engine = make_engine(get_settings().database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            yield conn
    finally:
        await engine.dispose()


async def _add_user(username: str, password_hash: str, roles: list[str], *, if_absent: bool = False) -> bool:
    """False when `if_absent` and the user exists: nothing is changed then."""
    async with _transaction() as conn:
        existed = await auth_repo.find_user(conn, username) is not None
        if existed and if_absent:
            return False
        await auth_repo.upsert_user(conn, username, password_hash, roles)
        if existed:  # `user add` on a known name resets its password and roles, and reactivates it
            audit = _audit("user.update", f"user:{username}", roles=roles, password_changed=True, active=True)
        else:
            audit = _audit("user.create", f"user:{username}", roles=roles)
        await audit_repo.record(conn, audit)
        return True


async def add_key(key_id: str, digest: str, name: str, roles: list[str]) -> None:
    async with _transaction() as conn:
        await auth_repo.add_api_key(conn, key_id, digest, name, roles)
        await audit_repo.record(conn, _audit("apikey.create", f"apikey:{key_id}", name=name, roles=roles))


async def revoke_key(key_id: str) -> bool:
    async with _transaction() as conn:
        revoked = await auth_repo.revoke_api_key(conn, key_id)
        if revoked:  # a key already revoked (or unknown): nothing changed, nothing to record
            await audit_repo.record(conn, _audit("apikey.revoke", f"apikey:{key_id}"))
        return revoked


async def _deactivate_user(username: str) -> bool:
    async with _transaction() as conn:
        changed = await auth_repo.set_user_active(conn, username, False)
        if changed:
            await audit_repo.record(conn, _audit("user.deactivate", f"user:{username}"))
        return changed


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: RoleOption,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    if_absent: Annotated[
        bool,
        typer.Option(
            "--if-absent",
            help="Only create: a user of that name (active or not) is left as it is. For a deployment's "
            "init job, which runs at every start and must not reset a password changed since.",
        ),
    ] = False,
) -> None:
    """Create a user, or reset an existing user's password and roles (and reactivate it)."""
    _issuing()
    if not valid_username(username):
        raise typer.BadParameter("use a name of 1-100 characters without control characters")
    roles = _roles(role)
    password = (
        sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt("Password", hide_input=True)
    )
    if len(password) < MIN_PASSWORD_CHARS:
        raise typer.BadParameter(f"use a password of at least {MIN_PASSWORD_CHARS} characters")
    if password in DEMO_PASSWORDS and get_settings().environment != "local":
        raise typer.BadParameter("that password is published in the README: choose another")
    if not asyncio.run(_add_user(username, hash_password(password), roles, if_absent=if_absent)):
        console.print(f"user {username} exists: left as it is")
        return
    console.print(f"user {username} has roles {', '.join(roles)}")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    role: RoleOption,
) -> None:
    """Create an API key. It is printed once and stored only as a hash."""
    _issuing()
    roles = _roles(role)
    key_id, key, digest = new_api_key()
    asyncio.run(add_key(key_id, digest, name, roles))
    console.print(f"key id {key_id} ({name}, roles {', '.join(roles)}). Store it now, it is not shown again:")
    print(key)


@user_app.command("deactivate")
def user_deactivate(username: Annotated[str, typer.Argument(help="Login name.")]) -> None:
    """Deactivate a user: no new login at once; tokens and live sockets stop within
    INVMON_PRINCIPAL_REFRESH_S. `user add` with a new password reactivates it."""
    if not asyncio.run(_deactivate_user(username)):
        console.print(f"no user {username}")
        raise typer.Exit(1)
    console.print(f"user {username} deactivated")


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="The key id printed at creation.")]) -> None:
    """Revoke an API key at once (every request with a key is checked in PostgreSQL)."""
    if not asyncio.run(revoke_key(key_id)):
        console.print(f"no active key {key_id}")
        raise typer.Exit(1)
    console.print(f"key {key_id} revoked")
