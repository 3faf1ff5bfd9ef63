"""Secrets at rest: argon2 password hashes, API key format and digests, and the CLI's role check."""

from __future__ import annotations

import hashlib
import re

import pytest
import typer
from typer.testing import CliRunner

from infra.credentials import (
    KEY_PREFIX,
    ROLES,
    digest_matches,
    hash_password,
    key_digest,
    new_api_key,
    split_api_key,
    verify_password,
)
from invmon.cli import app
from invmon.cli_auth import _roles

PASSWORD = "correct horse battery staple"


def test_password_hash_round_trip() -> None:
    hashed = hash_password(PASSWORD)
    assert hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed
    assert verify_password(PASSWORD, hashed)


def test_password_hashes_are_salted() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first != second
    assert verify_password(PASSWORD, first)
    assert verify_password(PASSWORD, second)


@pytest.mark.parametrize("attempt", ["", PASSWORD + " ", PASSWORD.upper(), PASSWORD[:-1]])
def test_wrong_password_is_refused(attempt: str) -> None:
    assert verify_password(attempt, hash_password(PASSWORD)) is False


@pytest.mark.parametrize("attempt", [PASSWORD, "", "not-a-real-password"])
def test_no_hash_never_verifies(attempt: str) -> None:
    """A missing user (no hash) is checked against a dummy hash for timing, and still refused, even with the
    dummy's own password."""
    assert verify_password(attempt, None) is False


def test_new_api_key_format() -> None:
    key_id, key, digest = new_api_key()
    match = re.fullmatch(rf"{KEY_PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})", key)
    assert match, key
    assert match[1] == key_id
    secret = match[2]
    assert split_api_key(key) == (key_id, secret)
    assert digest == key_digest(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert secret not in digest


def test_new_api_keys_are_unique() -> None:
    keys = [new_api_key() for _ in range(50)]
    assert len({key_id for key_id, _, _ in keys}) == 50
    assert len({key for _, key, _ in keys}) == 50


def test_split_keeps_underscores_of_the_secret() -> None:
    assert split_api_key("imk_0123abcd_se_cr_et") == ("0123abcd", "se_cr_et")


@pytest.mark.parametrize(
    "key",
    ["", "imk", "imk_", "imk_id", "imk_id_", "imk__secret", "xyz_id_secret", "IMK_id_secret", "imkid_secret"],
)
def test_split_rejects_malformed_keys(key: str) -> None:
    assert split_api_key(key) is None


def test_digest_matches() -> None:
    _, key, stored = new_api_key()
    parts = split_api_key(key)
    assert parts is not None
    secret = parts[1]
    assert digest_matches(secret, stored)
    assert not digest_matches(secret + "x", stored)
    assert not digest_matches(secret[:-1], stored)
    assert not digest_matches(secret, stored.upper())
    assert not digest_matches(secret, "")
    assert not digest_matches(stored, stored)  # the digest itself is not the key


def test_roles_accepts_known_roles_sorted_once() -> None:
    assert _roles(["viewer", "admin", "viewer"]) == ["admin", "viewer"]
    assert _roles(list(ROLES)) == sorted(ROLES)


@pytest.mark.parametrize("roles", [["root"], ["viewer", "superuser"], ["Viewer"], []])
def test_roles_rejects_unknown_or_none(roles: list[str]) -> None:
    with pytest.raises(typer.BadParameter):
        _roles(roles)


def test_cli_refuses_unknown_role_before_touching_the_database() -> None:
    result = CliRunner().invoke(
        app, ["user", "add", "someone", "--role", "root", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 2, result.output
    assert "root" in result.output


def test_cli_refuses_short_password_before_touching_the_database() -> None:
    result = CliRunner().invoke(
        app, ["user", "add", "someone", "--role", "viewer", "--password-stdin"], input="short\n"
    )
    assert result.exit_code == 2, result.output
    assert "12 characters" in result.output
