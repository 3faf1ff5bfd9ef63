"""The admin API's models: users, API keys and the audit trail of admin actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

RoleName = Literal["viewer", "operator", "pricing", "admin"]
MIN_PASSWORD_CHARS = 12  # the CLI's rule too (invmon user add)
# argon2 hashes any length in the same time, but a megabyte password is still a megabyte to read and hash.
MAX_PASSWORD_CHARS = 1024

AuditAction = Literal[
    "user.create",
    "user.update",
    "user.deactivate",
    "user.reactivate",
    "apikey.create",
    "apikey.revoke",
    "subscription.create",
    "subscription.update",
    "subscription.delete",
    "subscription.rotate_secret",
    "subscription.replay",
    "delivery.replay",
    "price_change.approve",
    "price_change.reject",
    "location.create",
    "location.update",
]


def _role_set(roles: list[RoleName]) -> list[RoleName]:
    return sorted(set(roles))


Roles = Annotated[
    list[RoleName],
    Field(min_length=1, max_length=4, description="One or more roles; admin may do everything."),
    AfterValidator(_role_set),
]
# 1-100 characters, no control characters: the CLI's rule (infra.credentials.valid_username).
Username = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"),
    Field(description="Login name.", examples=["alice"]),
]
Password = Annotated[
    str,
    Field(
        min_length=MIN_PASSWORD_CHARS,
        max_length=MAX_PASSWORD_CHARS,
        description=f"At least {MIN_PASSWORD_CHARS} characters; stored only as an argon2 hash.",
        examples=["correct-horse-battery"],
    ),
]
KeyName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$"),
    Field(description="What the key is for.", examples=["erp-sync"]),
]


class UserCreate(BaseModel):
    """A new user. An existing name is refused (409): change it with PATCH instead."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"username": "alice", "password": "correct-horse-battery", "roles": ["operator"]}]
        },
    )
    username: Username
    password: Password
    roles: Roles


class UserUpdate(BaseModel):
    """Fields to change; absent fields stay. A new password ends nothing by itself: deactivate to lock out."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"roles": ["viewer", "pricing"]}]}
    )
    roles: Roles | None = None
    password: Password | None = None


class UserView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "username": "alice",
                    "roles": ["operator"],
                    "active": True,
                    "created_at": "2026-12-07T09:00:00Z",
                    "updated_at": "2026-12-07T09:00:00Z",
                }
            ]
        }
    )
    username: str
    roles: list[str]
    active: bool = Field(description="A deactivated user cannot log in or refresh a token.")
    created_at: datetime
    updated_at: datetime


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "erp-sync", "roles": ["operator"]}]}
    )
    name: KeyName
    roles: Roles


class ApiKeyView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key_id": "3f9c2a1b7d4e5f60",
                    "name": "erp-sync",
                    "roles": ["operator"],
                    "created_at": "2026-12-07T09:00:00Z",
                    "revoked_at": None,
                }
            ]
        }
    )
    key_id: str = Field(description="The key's public part; the key is `imk_<key_id>_<secret>`.")
    name: str
    roles: list[str]
    created_at: datetime
    revoked_at: datetime | None = Field(description="When it was revoked; null while it works.")


class ApiKeyCreated(ApiKeyView):
    key: str = Field(
        description="The whole key, shown only in this answer (stored as a SHA-256 digest). "
        "Send it as `X-API-Key`.",
        examples=["imk_3f9c2a1b7d4e5f60_q8Yb..."],
    )


class AuditEntry(BaseModel):
    """One admin action, as recorded when it was done."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 42,
                    "at": "2026-12-07T09:00:00Z",
                    "actor": "user:alice",
                    "action": "apikey.create",
                    "target": "apikey:3f9c2a1b7d4e5f60",
                    "details": {"name": "erp-sync", "roles": ["operator"]},
                    "client": "203.0.113.7",
                }
            ]
        }
    )
    id: int
    at: datetime = Field(description="When it was recorded (UTC).")
    actor: str = Field(description="Who: `user:<name>`, `key:<key_id>` or `cli:<os user>`.")
    action: str = Field(description="What, e.g. `user.deactivate` or `price_change.approve`.")
    target: str = Field(description="On what, e.g. `user:bob` or `subscription:<id>`.")
    details: dict[str, Any] = Field(description="What changed; never a password, key or secret.")
    client: str = Field(description="The client address the request came from; `local` for the CLI.")


class AuditPage(BaseModel):
    items: list[AuditEntry] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )
