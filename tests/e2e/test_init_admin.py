"""The first admin of a deployment: compose's init job runs `invmon user add --if-absent` at every start. It
creates the user once, and never resets a password or roles changed since."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from typer.testing import CliRunner

from infra.settings import Settings
from invmon.cli import app as cli_app
from tests.integration.helpers import database

pytestmark = pytest.mark.stack

PASSWORD = "init-admin-password-0123"


def _add(name: str, role: str, password: str) -> str:
    args = ["user", "add", name, "--role", role, "--password-stdin", "--if-absent"]
    result = CliRunner().invoke(cli_app, args, input=password + "\n")
    assert result.exit_code == 0, result.output
    return result.output


def _user(settings: Settings, name: str) -> tuple[str, list[str]]:
    async def fetch() -> tuple[str, list[str]]:
        async with database(settings) as conn:
            row = await conn.fetchrow("SELECT password_hash, roles FROM users WHERE username = $1", name)
            assert row is not None, f"no user {name}"
            return row["password_hash"], list(row["roles"])

    return asyncio.run(fetch())


def test_if_absent_creates_the_user_once_and_then_leaves_it_as_it_is(stack: Settings) -> None:
    name = f"init-admin-{uuid.uuid4().hex[:8]}"
    assert "has roles admin" in _add(name, "admin", PASSWORD)
    created = _user(stack, name)
    assert created[1] == ["admin"]
    assert "exists: left as it is" in _add(name, "viewer", PASSWORD + "-changed")
    assert _user(stack, name) == created
