"""The admin API's contracts keep the CLI's rules: contracts/ cannot import infra/, so the copies are
checked against each other here."""

from __future__ import annotations

from typing import get_args

import pytest
from pydantic import ValidationError

from contracts.admin import MIN_PASSWORD_CHARS, ApiKeyCreate, RoleName, UserCreate
from db.auth_models import ROLE_CHECK
from infra.credentials import ROLES, valid_username


def test_roles_are_the_credentials_roles_and_the_tables_check() -> None:
    assert get_args(RoleName) == ROLES
    assert all(f"'{role}'" in ROLE_CHECK for role in ROLES)


@pytest.mark.parametrize(
    "username", ["alice", "a", "x" * 100, "x" * 101, "", "tab\there", "nul\x00", "del\x7f", "ünïcødé", "a b"]
)
def test_usernames_follow_the_cli_rule(username: str) -> None:
    body = {"username": username, "password": "p" * MIN_PASSWORD_CHARS, "roles": ["viewer"]}
    try:
        UserCreate.model_validate(body)
    except ValidationError:
        accepted = False
    else:
        accepted = True
    assert accepted == valid_username(username)


def test_passwords_shorter_than_the_cli_minimum_are_refused() -> None:
    with pytest.raises(ValidationError):
        UserCreate(username="alice", password="p" * (MIN_PASSWORD_CHARS - 1), roles=["viewer"])


def test_roles_are_deduplicated_and_sorted() -> None:
    assert ApiKeyCreate(name="erp", roles=["viewer", "admin", "viewer"]).roles == ["admin", "viewer"]
