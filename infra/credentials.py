"""Secrets at rest: argon2 password hashes (pwdlib), API keys as SHA-256 of a high-entropy secret.

API keys are 256-bit random, so a fast hash is enough (there is nothing to brute-force) and keeps a request
with a key cheap; passwords are low-entropy and get argon2.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Literal

from pwdlib import PasswordHash

Role = Literal["viewer", "operator", "pricing", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "pricing", "admin")
KEY_PREFIX = "imk"

_passwords = PasswordHash.recommended()
# Verifying against this when the user does not exist keeps the time of a failed login the same.
_DUMMY_HASH = _passwords.hash("not-a-real-password")


# 1-100 characters (the column's size), no control characters: PostgreSQL text cannot hold NUL, so a login
# naming one failed its lookup with a 500 instead of answering 401 (found by schemathesis).
_USERNAME = re.compile(r"[^\x00-\x1f\x7f]{1,100}")


def valid_username(username: str) -> bool:
    return _USERNAME.fullmatch(username) is not None


def hash_password(password: str) -> str:
    return _passwords.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    return bool(_passwords.verify(password, password_hash or _DUMMY_HASH)) and password_hash is not None


def new_api_key() -> tuple[str, str, str]:
    """(key_id, the full key to show once, its SHA-256 to store)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secret}", key_digest(secret)


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_api_key(key: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None."""
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not key_id or not secret:
        return None
    return key_id, secret


def digest_matches(secret: str, stored: str) -> bool:
    return hmac.compare_digest(key_digest(secret), stored)
