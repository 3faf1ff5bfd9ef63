"""`invmon user ...` and `invmon apikey ...`: people and machine clients of the HTTP edge."""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from rich.console import Console

from db import auth_repo
from db.engine import make_engine
from infra.credentials import ROLES, hash_password, new_api_key, valid_username
from infra.settings import get_settings

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


async def _run(action: str, *args: object) -> None:
    engine = make_engine(get_settings().database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await getattr(auth_repo, action)(conn, *args)
    finally:
        await engine.dispose()


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    role: RoleOption,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a user, or reset an existing user's password and roles."""
    if not valid_username(username):
        raise typer.BadParameter("use a name of 1-100 characters without control characters")
    roles = _roles(role)
    password = (
        sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt("Password", hide_input=True)
    )
    if len(password) < 12:
        raise typer.BadParameter("use a password of at least 12 characters")
    asyncio.run(_run("upsert_user", username, hash_password(password), roles))
    console.print(f"user {username} has roles {', '.join(roles)}")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    role: RoleOption,
) -> None:
    """Create an API key. It is printed once and stored only as a hash."""
    roles = _roles(role)
    key_id, key, digest = new_api_key()
    asyncio.run(_run("add_api_key", key_id, digest, name, roles))
    console.print(f"key id {key_id} ({name}, roles {', '.join(roles)}). Store it now, it is not shown again:")
    print(key)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="The key id printed at creation.")]) -> None:
    """Revoke an API key at once."""
    asyncio.run(_run("revoke_api_key", key_id))
    console.print(f"key {key_id} revoked")
